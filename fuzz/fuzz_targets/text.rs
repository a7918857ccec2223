//! Any text: the attribute's arguments on the first line, the item after.
#![no_main]

use libfuzzer_sys::{Corpus, fuzz_target};
use lockattr_fuzz::{Outcome, check_text};

fuzz_target!(|data: &[u8]| -> Corpus {
    match check_text(data) {
        Outcome::Unlexable => Corpus::Reject,
        Outcome::Expanded | Outcome::Refused => Corpus::Keep,
    }
});
