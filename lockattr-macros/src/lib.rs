//! Implementation detail of the `lockattr` crate: the `#[exclusive]`
//! attribute. Depend on `lockattr`, which re-exports it and documents it.

mod args;
mod expand;
mod template;

use proc_macro::TokenStream;

/// Runs the function only while it holds a cross-process lock; see the
/// `lockattr` crate.
#[proc_macro_attribute]
pub fn exclusive(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::exclusive(args.into(), item.into()).into()
}
