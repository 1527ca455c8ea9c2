//! The `#[idempotent]` attribute of [idem](https://docs.rs/idem). Use it through the
//! `idem` crate, which re-exports it and documents every option: the generated code
//! reaches the runtime through `::idem::__private`.
//!
//! The attribute holds no behaviour of its own. It keeps the function's signature as
//! written and rewrites the body into one call of idem's function API: the key (and
//! fingerprint) are evaluated once, before the body, and the original body becomes the
//! async block that API runs at most once per key.

mod ast;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Runs an `async fn` at most once per key; duplicates get the recorded result. See the
/// `idem` crate's documentation for every option.
#[proc_macro_attribute]
pub fn idempotent(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    // Parse, validate, expand (thiserror's three steps). syn's own errors about the
    // item are passed on as they are.
    let expanded = syn::parse::<ast::Options>(args)
        .and_then(|options| Ok((options, syn::parse2(item.clone())?)))
        .and_then(|(options, function)| valid::validate(options, function))
        .map(expand::expand);
    match expanded {
        Ok(tokens) => tokens.into(),
        // The original item stays beside the errors, so one mistake in the attribute
        // does not bury the user under errors about a function that vanished.
        Err(error) => {
            let error = error.to_compile_error();
            quote::quote!(#error #item).into()
        }
    }
}
