//! Option lists and items built from the real syntax (`generate::Case`).
#![no_main]

use libfuzzer_sys::{Corpus, fuzz_target};
use lockattr_fuzz::generate::Case;
use lockattr_fuzz::{Outcome, check_source};

fuzz_target!(|case: Case| -> Corpus {
    match check_source(&case.args(), &case.item()) {
        Outcome::Unlexable => Corpus::Reject,
        Outcome::Expanded | Outcome::Refused => Corpus::Keep,
    }
});
