"""crpy's test suite: unit tests (tests/unit) and the zdtm regression harness (tests/zdtm)."""
