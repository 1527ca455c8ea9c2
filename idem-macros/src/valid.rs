//! Step 2, validate: the options fit together (`key` is there) and fit the function
//! (async, returning a nameable type, a method named). Every mistake is reported at
//! once, on the tokens at fault.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, ExprCall, GenericArgument, ItemFn, ReturnType, Stmt, Type};

use crate::ast::Options;

/// A function the attribute can guard, with its options.
pub struct Valid {
    pub options: Options,
    pub key: Expr,
    pub function: ItemFn,
    /// The type the body produces: the declared return type, or for a method that
    /// `#[async_trait]` rewrote, the `Output` of the future it returns.
    pub ret: Type,
    /// Whether `#[async_trait]` rewrote the function: its body is then
    /// `Box::pin(async move { ... })` and the inner block is what gets guarded.
    pub async_trait: bool,
}

pub fn validate(mut options: Options, function: ItemFn) -> syn::Result<Valid> {
    let mut errors = Errors::default();
    let key = options.key.take();
    if key.is_none() && !options.key_written {
        errors.push(syn::Error::new(
            options.span.unwrap_or_else(Span::call_site),
            "#[idempotent] needs `key = ...`: the value that tells one event from another, \
             e.g. `#[idempotent(key = event.request_id)]`",
        ));
    }
    if let (Some(receiver), None) = (function.sig.receiver(), &options.name) {
        errors.push(syn::Error::new_spanned(
            receiver,
            "a method with a `self` receiver needs `name = \"...\"`: #[idempotent] cannot see the \
             impl's type, so the default name `module::method` would be shared by every type with \
             a method of that name; write e.g. `name = \"Billing::charge\"`",
        ));
    }
    if let (Some(report), Some(transaction)) = (&options.report, &options.transaction) {
        if report.value {
            errors.push(syn::Error::new(
                transaction.binding.span(),
                "`report = true` and `transaction` cannot be combined: drop `report`, or call \
                 `Call::run_in_transaction` yourself",
            ));
        }
    }
    let shape = if function.sig.asyncness.is_some() {
        result_type(&function.sig.output, &function.sig.ident).map(|ret| (ret.clone(), false))
    } else if let Some(ret) = async_trait_output(&function) {
        Ok((ret, true))
    } else {
        Err(syn::Error::new_spanned(
            function.sig.fn_token,
            "#[idempotent] goes on an `async fn`: write `async fn`",
        ))
    };
    let shape = shape.map_err(|error| errors.push(error)).ok();
    errors.finish()?;
    let (Some(key), Some((ret, async_trait))) = (key, shape) else {
        // `key` was written without a value: the parse step reported that.
        return Err(syn::Error::new(Span::call_site(), "`key` needs a value"));
    };
    Ok(Valid {
        options,
        key,
        function,
        ret,
        async_trait,
    })
}

/// Errors collected to be reported together.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
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
