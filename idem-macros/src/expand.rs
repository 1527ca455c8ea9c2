//! Step 3, expand: the function's body rewritten into one call of idem's function API.
//! The signature stays as written.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt as _;
use syn::spanned::Spanned;
use syn::{parse_quote, Expr, ExprAsync, ItemFn, Path, Stmt, Type};

use crate::ast::{DurationArg, Options};
use crate::valid::Valid;

pub fn expand(valid: Valid) -> TokenStream {
    let Valid {
        options,
        key,
        mut function,
        ret,
        async_trait,
    } = valid;
    let krate: Path = options
        .krate
        .clone()
        .unwrap_or_else(|| parse_quote!(::idem));
    let name = function.sig.ident.clone();
    if async_trait {
        // `#[async_trait]` ran first and left `Box::pin(async move { ... })`: guard the
        // inner block, as tracing's #[instrument] does.
        let inner = async_trait_block(&mut function).expect("checked by validation");
        let body = inner.block.to_token_stream();
        let guarded = guarded_body(&options, &key, &krate, &name, &ret, body);
        inner.block = parse_quote!({ #guarded });
    } else {
        let body = function.block.to_token_stream();
        let guarded = guarded_body(&options, &key, &krate, &name, &ret, body);
        function.block = Box::new(parse_quote!({ #guarded }));
    }
    function.into_token_stream()
}

/// The statements that replace the body: build the call (key and fingerprint are
/// evaluated here, once, before the body), then run the body under it.
fn guarded_body(
    args: &Options,
    key: &Expr,
    krate: &Path,
    function_name: &syn::Ident,
    ret: &Type,
    body: TokenStream,
) -> TokenStream {
    let call = syn::Ident::new("__idem_call", Span::mixed_site());
    let namespace = match &args.name {
        Some(name) => name.to_token_stream(),
        None => {
            // `r#type` is named `type`: a raw identifier's `r#` is not part of its name.
            let function_name = function_name.unraw().to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #function_name))
        }
    };
    let mut options = Vec::new();
    let mut fingerprint_call = None;
    if let Some(engine) = &args.engine {
        options.push(quote!(.engine(&(#engine))));
    }
    for (method, value) in [
        ("ttl", &args.ttl),
        ("lease", &args.lease),
        ("max_duration", &args.max_duration),
        ("wait", &args.wait),
    ] {
        if let Some(value) = value {
            let value = duration(value, krate, method);
            let method = syn::Ident::new(method, Span::call_site());
            options.push(quote!(.#method(#value)));
        }
    }
    if args.optional_key.as_ref().is_some_and(|value| value.value) {
        options.push(quote!(.optional_key()));
    }
    if let Some(fingerprint) = &args.fingerprint {
        // The requirement is checked at the fingerprint's tokens.
        let private = respan(quote!(#krate::__private), fingerprint.span());
        fingerprint_call = Some(quote_spanned! {fingerprint.span()=>
            let #call = #private::fingerprint(#call, &(#fingerprint));
        });
    }
    // The requirements on the return type are checked where `run` and `replay_errors`
    // are named with it. Every token of those paths and of the type gets the return
    // type's first span, so rustc reports each unmet requirement once, there.
    let span = ret.span();
    // The key's requirement is checked at the key's tokens.
    let key_private = respan(quote!(#krate::__private), key.span());
    let new_call = quote_spanned! {key.span()=>
        let #call = #key_private::call(#namespace, &(#key));
    };
    let ret = respan(ret.to_token_stream(), span);
    let private = respan(quote!(#krate::__private), span);
    let replay_errors = args.replay_errors.as_ref().map(|predicate| {
        quote_spanned! {span=>
            let #call = #private::replay_errors::<#ret, _, _>(#call, #predicate);
        }
    });
    // The release event writes the error by `Display`, else `Debug`, else its type's
    // name: chosen by autoref on the concrete error type, here where it is known.
    let describe = quote! {
        let #call = #call.describe_errors(|error: &<#ret as #private::IdempotentResult>::Err| {
            #[allow(unused_imports)]
            use #private::{DescribeByDebug as _, DescribeByDisplay as _, DescribeByName as _};
            (&&&#private::Describe(error)).describe()
        });
    };
    let run = if let Some(transaction) = &args.transaction {
        let (binding, ty) = (&transaction.binding, &transaction.ty);
        quote_spanned! {span=>
            #private::run_in_transaction::<#ret, #ty, _, _>(#call, async move |_, #binding: &mut #ty| #body).await
        }
    } else if args.report.as_ref().is_some_and(|value| value.value) {
        quote_spanned! {span=>
            #private::run_reported::<#ret, _, _, _>(#call, move |_| async move #body).await
        }
    } else {
        quote_spanned! {span=>
            #private::run::<#ret, _, _, _>(#call, move |_| async move #body).await
        }
    };
    quote! {
        #new_call
        let #call = #call #(#options)*;
        #fingerprint_call
        #replay_errors
        #describe
        #run
    }
}

/// A duration option's value. A literal `ttl` or `lease` that the engine would refuse at
/// every call is refused at compile time, by the engine's own rule: the value is
/// checked in a `const` item (`__private::checked_ttl`, `checked_lease`), whose
/// evaluation fails with the rule's message, at the literal.
fn duration(value: &DurationArg, krate: &Path, option: &str) -> TokenStream {
    match value {
        DurationArg::Literal(duration, span) => {
            let (secs, nanos) = (duration.as_secs(), duration.subsec_nanos());
            let literal = quote_spanned!(*span=> ::core::time::Duration::new(#secs, #nanos));
            let check = match option {
                "ttl" => Some(syn::Ident::new("checked_ttl", *span)),
                "lease" => Some(syn::Ident::new("checked_lease", *span)),
                _ => None,
            };
            match check {
                Some(check) => {
                    let private = respan(quote!(#krate::__private), *span);
                    // A `const` item, not a `const { }` block: `cargo check` evaluates
                    // items, while a block in a function body waits for code generation.
                    quote_spanned!(*span=> {
                        const _: ::core::time::Duration = #private::#check(#literal);
                        #literal
                    })
                }
                None => literal,
            }
        }
        DurationArg::Expr(expr) => expr.to_token_stream(),
    }
}

fn async_trait_block(function: &mut ItemFn) -> Option<&mut ExprAsync> {
    match function.block.stmts.as_mut_slice() {
        [Stmt::Expr(Expr::Call(call), None)] => match call.args.first_mut() {
            Some(Expr::Async(inner)) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut respanned = Group::new(group.delimiter(), respan(group.stream(), span));
                respanned.set_span(span);
                token = TokenTree::Group(respanned);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}
