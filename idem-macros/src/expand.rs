//! Rewriting the function's body into one call of idem's function API.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    parse_quote, Expr, ExprAsync, ExprCall, GenericArgument, ItemFn, Path, ReturnType, Stmt, Type,
};

use crate::attr::{Args, DurationArg};

pub fn expand(args: Args, item: TokenStream) -> syn::Result<TokenStream> {
    let mut function: ItemFn = syn::parse2(item).map_err(|error| {
        syn::Error::new(
            error.span(),
            "#[idempotent] goes on an `async fn` with a body",
        )
    })?;
    let krate: Path = args.krate.clone().unwrap_or_else(|| parse_quote!(::idem));
    let mut errors = Vec::new();
    if let (Some(receiver), None) = (function.sig.receiver(), &args.name) {
        errors.push(syn::Error::new_spanned(
            receiver,
            "a method with a `self` receiver needs `name = \"...\"`: #[idempotent] cannot see the \
             impl's type, so the default name `module::method` would be shared by every type with \
             a method of that name; write e.g. `name = \"Billing::charge\"`",
        ));
    }
    let name = function.sig.ident.clone();
    let expanded = if function.sig.asyncness.is_some() {
        match result_type(&function.sig.output, &function.sig.ident) {
            Ok(ret) => {
                let ret = ret.clone();
                let body = function.block.to_token_stream();
                let guarded = guarded_body(&args, &krate, &name, &ret, body);
                function.block = Box::new(parse_quote!({ #guarded }));
                Ok(())
            }
            Err(error) => Err(error),
        }
    } else if let Some(ret) = async_trait_output(&function) {
        // `#[async_trait]` ran first and left `Box::pin(async move { ... })`: guard the
        // inner block, as tracing's #[instrument] does.
        let inner = async_trait_block(&mut function).expect("checked by async_trait_output");
        let body = inner.block.to_token_stream();
        let guarded = guarded_body(&args, &krate, &name, &ret, body);
        inner.block = parse_quote!({ #guarded });
        Ok(())
    } else {
        Err(syn::Error::new_spanned(
            function.sig.fn_token,
            "#[idempotent] goes on an `async fn`: write `async fn`",
        ))
    };
    if let Err(error) = expanded {
        errors.push(error);
    }
    if let Some(mut all) = errors.pop() {
        for error in errors {
            all.combine(error);
        }
        return Err(all);
    }
    Ok(function.into_token_stream())
}

/// The declared return type, which must be a type (a `Result`, checked by the compiler
/// through `IdempotentResult`) and not `impl Trait`.
fn result_type<'a>(output: &'a ReturnType, name: &syn::Ident) -> syn::Result<&'a Type> {
    let ty = match output {
        ReturnType::Type(_, ty) => ty,
        ReturnType::Default => return Err(syn::Error::new_spanned(
            name,
            "#[idempotent] functions must return a `Result<T, E>`: idem records the `Ok` value \
                 for duplicates and releases the key on `Err`",
        )),
    };
    let mut finder = ImplTraitFinder(None);
    finder.visit_type(ty);
    if let Some(span) = finder.0 {
        return Err(syn::Error::new(
            span,
            "#[idempotent] records the returned value, so it must have a nameable type: \
             replace `impl Trait` with the concrete type",
        ));
    }
    Ok(ty)
}

struct ImplTraitFinder(Option<Span>);

impl<'ast> Visit<'ast> for ImplTraitFinder {
    fn visit_type_impl_trait(&mut self, node: &'ast syn::TypeImplTrait) {
        self.0.get_or_insert(node.span());
    }
}

/// The statements that replace the body: build the call (key and fingerprint are
/// evaluated here, once, before the body), then run the body under it.
fn guarded_body(
    args: &Args,
    krate: &Path,
    function_name: &syn::Ident,
    ret: &Type,
    body: TokenStream,
) -> TokenStream {
    let call = syn::Ident::new("__idem_call", Span::mixed_site());
    let namespace = match &args.name {
        Some(name) => name.to_token_stream(),
        None => {
            let function_name = function_name.to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #function_name))
        }
    };
    let key = &args.key;
    let mut options = Vec::new();
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
            let method = syn::Ident::new(method, Span::call_site());
            let value = duration(value);
            options.push(quote!(.#method(#value)));
        }
    }
    if let Some(fingerprint) = &args.fingerprint {
        options.push(quote!(.fingerprint(&(#fingerprint))));
    }
    // The requirements on the return type are checked where `run` and `replay_errors`
    // are named with it. Every token of those paths and of the type gets the return
    // type's first span, so rustc reports each unmet requirement once, there.
    let span = ret.span();
    let ret = respan(ret.to_token_stream(), span);
    let private = respan(quote!(#krate::__private), span);
    let replay_errors = args.replay_errors.as_ref().map(|predicate| {
        quote_spanned! {span=>
            let #call = #private::replay_errors::<#ret, _, _>(#call, #predicate);
        }
    });
    let run = quote_spanned! {span=>
        #private::run::<#ret, _, _, _>(#call, move |_| async move #body).await
    };
    quote! {
        let #call = #krate::__private::Call::new(#namespace, &(#key)) #(#options)*;
        #replay_errors
        #run
    }
}

fn duration(value: &DurationArg) -> TokenStream {
    match value {
        DurationArg::Literal(duration, span) => {
            let (secs, nanos) = (duration.as_secs(), duration.subsec_nanos());
            quote_spanned!(*span=> ::core::time::Duration::new(#secs, #nanos))
        }
        DurationArg::Expr(expr) => expr.to_token_stream(),
    }
}

/// The `Output = T` of a function that `#[async_trait]` rewrote to return
/// `Pin<Box<dyn Future<Output = T> + Send + 'async_trait>>`, when its body is the
/// `Box::pin(async move { ... })` that async-trait writes.
fn async_trait_output(function: &ItemFn) -> Option<Type> {
    let ReturnType::Type(_, ty) = &function.sig.output else {
        return None;
    };
    let [Stmt::Expr(Expr::Call(call), None)] = function.block.stmts.as_slice() else {
        return None;
    };
    if !is_box_pin_async(call) {
        return None;
    }
    struct OutputFinder(Option<Type>);
    impl<'ast> Visit<'ast> for OutputFinder {
        fn visit_generic_argument(&mut self, node: &'ast GenericArgument) {
            match node {
                GenericArgument::AssocType(assoc) if assoc.ident == "Output" => {
                    self.0.get_or_insert_with(|| assoc.ty.clone());
                }
                _ => syn::visit::visit_generic_argument(self, node),
            }
        }
    }
    let mut finder = OutputFinder(None);
    finder.visit_type(ty);
    finder.0
}

fn is_box_pin_async(call: &ExprCall) -> bool {
    let Expr::Path(path) = &*call.func else {
        return false;
    };
    let segments: Vec<_> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    segments.ends_with(&["Box".to_owned(), "pin".to_owned()])
        && matches!(call.args.first(), Some(Expr::Async(_)))
        && call.args.len() == 1
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
