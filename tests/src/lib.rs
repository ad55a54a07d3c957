//! Fixtures for end-to-end tests: a real server on 127.0.0.1:0 with a temporary data directory.
