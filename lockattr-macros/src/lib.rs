//! Implementation detail of the `lockattr` crate: the `#[exclusive]`
//! attribute. Depend on `lockattr`, which re-exports it and documents it.

mod args;
mod expand;
mod template;

use proc_macro::TokenStream;

// Documented where users find it, on its re-export `lockattr::exclusive`
// (`lockattr/src/exclusive.md`). No doc comment here: rustdoc would append
// it to that page.
#[proc_macro_attribute]
pub fn exclusive(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::exclusive(args.into(), item.into()).into()
}
