//! End-to-end tests of the HTTP API on a real server bound to 127.0.0.1:0.

mod accounts;
mod bad_input;
mod confidentiality;
mod documents;
mod dossier;
mod draws;
mod frequency;
mod hardening_accounts;
mod hardening_blobs;
mod hardening_transport;
mod import_xlsx;
mod outcomes;
mod phone_session;
mod plans;
mod provisional_deadlines;
mod rechecks;
mod registry;
mod retention;
mod review;
mod sync;
mod trust;
mod two_years;
mod web;
mod web_corrections;
mod web_recusal;
mod web_registry;
