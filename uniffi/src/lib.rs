//! uniffi bindings over suiji-mobile-core. Logic lives in mobile-core; this crate only wraps.

uniffi::setup_scaffolding!();

/// The record document schema version the bound core speaks.
#[uniffi::export]
pub fn record_schema_version() -> u64 {
    suiji_mobile_core::RECORD_SCHEMA_VERSION
}

#[cfg(test)]
mod tests {
    #[test]
    fn exposes_core_schema_version() {
        assert_eq!(
            super::record_schema_version(),
            suiji_mobile_core::RECORD_SCHEMA_VERSION
        );
    }
}
