"""The licence store (电子证照库, GB/T 36901–36905): issue, change, revoke and share electronic licences.

Modules, each named for what it holds:

- :mod:`.identifier` — ``1.2.156.3005.2.<type>.<issuer>.<serial>.<version>.<check>`` and the
  ISO/IEC 7064 MOD 37,36 check character;
- :mod:`.metadata` — the GB/T 36903 core set, JSON Schema validation with field-level errors;
- :mod:`.catalogue` — licence types (GB/T 36902): schema, template, seal type, validity, issuers;
- :mod:`.rendering` — the deterministic OFD of a licence (QR code to the online check) and of an
  annotated copy;
- :mod:`.issuing` — issue in one transaction (validate → identifier → render → seal → store → audit);
- :mod:`.status` / :mod:`.lifecycle` — status codes 01–05/99, change, renewal, withholding, return,
  revocation, cancellation, expiry;
- :mod:`.verification` — the public online check by identifier or QR payload;
- :mod:`.grants` / :mod:`.sharing` — holder authorisation, originals and annotated copies;
- :mod:`.access_log` — every use in the audit chain, and queries;
- :mod:`.objections` — objections and corrections;
- :mod:`.stock_import` — CSV/JSON imports through :mod:`signer.batch`;
- :mod:`.records` — reading and searching; :mod:`.rate_limit`, :mod:`.settings`.

Depends on ``core``, ``gmpki``, ``seal_registry`` and ``signer``; nothing here imports ``api``.
"""
