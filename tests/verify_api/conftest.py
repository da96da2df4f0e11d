"""Fixtures for the verification interfaces: the real HTTP server, the registry, and a region-issued
seal with signatures made before and after its cancellation."""

from __future__ import annotations

import datetime as dt
import io
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction, utcnow
from gmpki.seal import make_ses_signature
from gmpki.sm3 import sm3
from hsm_adapters.keystore import KeyStore, KeyStoreSigner
from seal_registry import seals
from seal_registry.demo import DEMO_USCC
from seal_registry.models import Department, PkiCertificate, Seal
from seal_registry.pki import trust_anchors
from tests.api.conftest import LiveServer
from tests.api.conftest import live_server as live_server
from tests.registry.conftest import registry as registry

ACTOR = "seal_officer:verify-tests"
DATA = "行政许可决定书：准予许可。".encode()


def picture_png() -> bytes:
    img = Image.new("RGBA", (120, 120), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse((6, 6, 114, 114), outline=(230, 0, 18, 255), width=8)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


PNG = picture_png()


@dataclass
class RegionSeal:
    """An issued seal of a registry and the means to sign with it."""

    sessions: sessionmaker[Session]
    keystore: KeyStore
    department_id: str
    seal: Seal

    @property
    def es_id(self) -> str:
        return self.seal.es_id

    def sign(self, data: bytes = DATA, property_info: str = "decision.txt") -> bytes:
        """A signature through the registry's own path (authorisation, audit)."""
        with transaction(self.sessions) as s:
            return seals.sign_with_seal(
                s,
                self.keystore,
                es_id=self.es_id,
                department_id=self.department_id,
                data_hash=sm3(data),
                property_info=property_info,
                actor=ACTOR,
            )

    def forge(self, when: dt.datetime, data: bytes = DATA) -> bytes:
        """A signature made with the department key directly, bypassing the registry's refusal:
        what someone holding the key could still do after the seal is cancelled."""
        with self.sessions() as s:
            cert = s.get(PkiCertificate, self.seal.signer_certificate_id)
            assert cert is not None and cert.key_id is not None and self.seal.seal_der is not None
            der, key_id = cert.der, cert.key_id
        return make_ses_signature(
            self.seal.seal_der, sm3(data), "decision.txt", der, KeyStoreSigner(self.keystore, key_id), when
        )

    def act(self, action: str, reason: str = "test") -> Seal:
        fn = {"suspend": seals.suspend, "resume": seals.resume, "cancel": seals.cancel}[action]
        with transaction(self.sessions) as s:
            self.seal = fn(s, self.seal.id, actor=ACTOR, reason=reason)
        return self.seal

    def root_pem(self, directory: Path) -> Path:
        with self.sessions() as s:
            anchors = trust_anchors(s)
        path = directory / "region-root.pem"
        path.write_text("".join(c.to_pem() for c in anchors))
        return path


def issue_seal(
    sessions: sessionmaker[Session], keystore: KeyStore, department_id: str, *, name: str | None = None
) -> Seal:
    with transaction(sessions) as s:
        seal = seals.apply_seal(
            s,
            department_id=department_id,
            seal_type_key="contract",
            name=name,
            picture=seals.PictureUpload(PNG, "png"),
            actor=ACTOR,
            reason="verification tests",
        )
    for action in ("review", "make", "file", "issue"):
        with transaction(sessions) as s:
            if action == "make":
                seal = seals.make_seal(s, keystore, seal.id, actor=ACTOR)
            else:
                fn = {"review": seals.review, "file": seals.file_seal, "issue": seals.issue_seal}[action]
                seal = fn(s, seal.id, actor=ACTOR)
    return seal


def demo_department_id(sessions: sessionmaker[Session]) -> str:
    with sessions() as s:
        dept_id = s.scalar(select(Department.id).where(Department.uscc == DEMO_USCC))
    assert dept_id is not None
    return dept_id


def region_seal_of(server: LiveServer, *, name: str | None = None) -> RegionSeal:
    ctx = server.ctx
    dept = demo_department_id(ctx.sessions)
    return RegionSeal(
        ctx.sessions, ctx.keystore, dept, issue_seal(ctx.sessions, ctx.keystore, dept, name=name)
    )


@dataclass
class Cancelled:
    """A seal that signed, was cancelled, and then was used again with its key."""

    region: RegionSeal
    before: bytes  # signed through the registry, before the cancellation
    after: bytes  # made with the key two seconds after the cancellation
    cancelled_at: dt.datetime


def after_the_second_of(when: dt.datetime) -> None:
    """Sleep into the next whole second: signing times (and snapshot times) have whole seconds, so a
    state change in the same second as a signature could not be told apart from it."""
    wait = (when.replace(microsecond=0) + dt.timedelta(seconds=1.02) - utcnow()).total_seconds()
    if wait > 0:
        time.sleep(wait)


def cancelled_scenario(region: RegionSeal) -> Cancelled:
    before = region.sign()
    after_the_second_of(utcnow())
    seal = region.act("cancel", "key holder left")
    cancelled_at = seal.state_changed_at
    # timeInfo has whole seconds: two seconds later is unambiguously after the cancellation.
    after = region.forge(cancelled_at.replace(microsecond=0) + dt.timedelta(seconds=2))
    assert utcnow() >= cancelled_at
    return Cancelled(region, before, after, cancelled_at)


@pytest.fixture
def region(live_server: LiveServer) -> RegionSeal:
    return region_seal_of(live_server)
