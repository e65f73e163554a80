//! The errors a user gets for the common mistakes (see `tests/ui/*.stderr`). Regenerate the
//! expected output with `TRYBUILD=overwrite cargo test -p kcl-macros --test compile_fail`.

#[test]
fn common_mistakes_have_clear_errors() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
