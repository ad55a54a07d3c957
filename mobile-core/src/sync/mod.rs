//! Syncing records between phones and the server: the wire format both sides
//! speak ([`wire`]).

pub mod wire;
