//! Procedural macros for the `kcl` crate; use them through `kcl` (`#[kcl::processor]`,
//! `#[kcl::main]`), whose documentation has the examples.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, ItemFn, LitInt, PathArguments, ReturnType, Type, parse_macro_input,
};

/// Turns an `async fn` over a record or a batch into a record processor factory.
///
/// The function takes one of `kcl::Record`, `&kcl::Record`, `&[kcl::Record]` (a batch) or
/// `kcl::Json<T>` (the record's data decoded with `serde_json`; undecodable records are logged,
/// counted and skipped) and returns `Result<(), E>` where `E` converts into
/// `kcl::ProcessorError`. Options: `checkpoint(every = N)` (records), `checkpoint(seconds = N)`;
/// the default checkpoints after each batch.
///
/// The function's name becomes a unit struct implementing `kcl::ProcessorFactory`, so it goes
/// straight into `Scheduler::builder().processor_factory(name)` or `kcl::run_from_env(name)`;
/// the function itself stays callable as `name::call(...)`.
///
/// Whatever the policy, the processor checkpoints at `SHARD_END` when the shard ends and at the
/// last handled record on a graceful shutdown or handoff. A record handler that fails has the
/// records before the failing one checkpointed, and the batch resumes at the failing record.
///
/// ```
/// use kcl::{Json, Record};
///
/// #[derive(serde::Deserialize)]
/// struct Order {
///     id: u64,
/// }
///
/// #[kcl::processor(checkpoint(every = 100))]
/// async fn orders(Json(order): Json<Order>) -> Result<(), std::io::Error> {
///     println!("order {}", order.id);
///     Ok(())
/// }
///
/// #[kcl::processor(checkpoint(seconds = 5))]
/// async fn batches(records: &[Record]) -> Result<(), kcl::ProcessorError> {
///     println!("{} records", records.len());
///     Ok(())
/// }
///
/// let builder = kcl::Scheduler::builder().processor_factory(orders);
/// # let _ = (builder, batches);
/// ```
#[proc_macro_attribute]
pub fn processor(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut policy = Policy::EachBatch;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("checkpoint") {
            meta.parse_nested_meta(|option| {
                if !matches!(policy, Policy::EachBatch) {
                    return Err(option.error("choose one checkpoint policy: `every = N` or `seconds = N`"));
                }
                let kind = if option.path.is_ident("every") {
                    Policy::Records
                } else if option.path.is_ident("seconds") {
                    Policy::Seconds
                } else {
                    return Err(option.error(
                        "unknown checkpoint option; expected `every = N` (records) or `seconds = N`",
                    ));
                };
                let n: LitInt = option.value()?.parse()?;
                if n.base10_parse::<u64>()? == 0 {
                    return Err(syn::Error::new(n.span(), "must be at least 1"));
                }
                policy = kind(n);
                Ok(())
            })
        } else {
            Err(meta.error(
                "unknown #[kcl::processor] option; expected `checkpoint(every = N)` or `checkpoint(seconds = N)`",
            ))
        }
    });
    parse_macro_input!(args with parser);
    let function = parse_macro_input!(item as ItemFn);
    expand_processor(function, policy)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Runs an `async fn main()` on a multi-threaded tokio runtime with logging set up
/// (`kcl::runner::start`), so a consumer needs no direct tokio or tracing dependency. The
/// function may return anything `main` may, such as `Result<(), kcl::runner::RunError>`.
///
/// ```no_run
/// #[kcl::processor]
/// async fn print(record: kcl::Record) -> Result<(), kcl::ProcessorError> {
///     println!("{:?}", record.data);
///     Ok(())
/// }
///
/// #[kcl::main]
/// async fn main() -> Result<(), kcl::runner::RunError> {
///     kcl::run_from_env(print).await
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = TokenStream2::from(args);
    let function = parse_macro_input!(item as ItemFn);
    expand_main(args, function)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// The checkpoint policy chosen in the attribute.
enum Policy {
    EachBatch,
    Records(LitInt),
    Seconds(LitInt),
}

/// What the function takes.
enum Input {
    Owned,
    Borrowed,
    Batch,
    Json(Box<Type>),
}

const SIGNATURE: &str = "expected `async fn name(record: kcl::Record) -> Result<(), E>`; the parameter may also be `&kcl::Record`, a batch `&[kcl::Record]`, or `kcl::Json<T>`";

fn expand_processor(function: ItemFn, policy: Policy) -> syn::Result<TokenStream2> {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span,
            format!("#[kcl::processor] needs an `async fn`: {SIGNATURE}"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "#[kcl::processor] functions cannot be generic",
        ));
    }
    let parameter = match sig.inputs.iter().collect::<Vec<_>>().as_slice() {
        [FnArg::Typed(parameter)] => (*parameter).clone(),
        [FnArg::Receiver(receiver)] => {
            return Err(syn::Error::new(
                receiver.span(),
                format!("#[kcl::processor] takes a free function, not a method: {SIGNATURE}"),
            ));
        }
        _ => {
            let span = if sig.inputs.is_empty() {
                sig.paren_token.span.join()
            } else {
                sig.inputs.span()
            };
            return Err(syn::Error::new(
                span,
                format!(
                    "#[kcl::processor] functions take exactly one parameter, not {}: {SIGNATURE}",
                    sig.inputs.len()
                ),
            ));
        }
    };
    let input = classify(&parameter.ty)?;
    let ReturnType::Type(_, output) = &sig.output else {
        return Err(syn::Error::new(
            sig.ident.span(),
            "#[kcl::processor] functions return `Result<(), E>` (with `E` convertible into `kcl::ProcessorError`); add a return type",
        ));
    };
    if !is_result(output) {
        return Err(syn::Error::new(
            output.span(),
            "#[kcl::processor] functions return `Result<(), E>` (with `E` convertible into `kcl::ProcessorError`)",
        ));
    }

    let name = &sig.ident;
    let inputs = &sig.inputs;
    let policy = match policy {
        Policy::EachBatch => quote!(::kcl::handler::CheckpointPolicy::EachBatch),
        Policy::Records(n) => quote!(::kcl::handler::CheckpointPolicy::EveryRecords(#n)),
        Policy::Seconds(n) => quote!(::kcl::handler::CheckpointPolicy::Interval(
            ::std::time::Duration::from_secs(#n)
        )),
    };
    // Spanned at the user's signature, so a non-Send future or a wrong error type is reported
    // there rather than inside the generated code.
    let span = sig.span();
    let error = quote_spanned!(output.span()=> ::kcl::handler::IntoProcessorError::into_processor_error(error));
    let record_handler = |argument: TokenStream2| {
        let handler = quote_spanned! {span=>
            // The future must be `Send`; an `async fn` here would not say so.
            #[allow(clippy::manual_async_fn)]
            impl ::kcl::handler::RecordHandler for #name {
                fn handle(
                    &self,
                    record: &::kcl::Record,
                ) -> impl ::std::future::Future<Output = ::std::result::Result<(), ::kcl::handler::HandleError>> + ::std::marker::Send {
                    async move {
                        match #name::call(#argument).await {
                            ::std::result::Result::Ok(()) => ::std::result::Result::Ok(()),
                            ::std::result::Result::Err(error) => ::std::result::Result::Err(
                                ::kcl::handler::HandleError::Failed(#error),
                            ),
                        }
                    }
                }
            }
        };
        (handler, quote!(::kcl::handler::PerRecord))
    };
    let (handler, processor) = match input {
        Input::Batch => (
            quote_spanned! {span=>
                // The future must be `Send`; an `async fn` here would not say so.
                #[allow(clippy::manual_async_fn)]
                impl ::kcl::handler::BatchHandler for #name {
                    fn handle(
                        &self,
                        records: &[::kcl::Record],
                    ) -> impl ::std::future::Future<Output = ::std::result::Result<(), ::kcl::ProcessorError>> + ::std::marker::Send {
                        async move {
                            match #name::call(records).await {
                                ::std::result::Result::Ok(()) => ::std::result::Result::Ok(()),
                                ::std::result::Result::Err(error) => ::std::result::Result::Err(#error),
                            }
                        }
                    }
                }
            },
            quote!(::kcl::handler::PerBatch),
        ),
        Input::Owned => record_handler(quote!(::std::clone::Clone::clone(record))),
        Input::Borrowed => record_handler(quote!(record)),
        Input::Json(ty) => record_handler(quote!(::kcl::handler::Json::<#ty>::decode(record)?)),
    };
    Ok(quote! {
        #(#attrs)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #name;

        impl #name {
            /// The function as written, callable directly (e.g. from a unit test).
            #vis async fn call(#inputs) -> #output #block
        }

        #handler

        impl ::kcl::ProcessorFactory for #name {
            fn create_processor(&self) -> ::std::boxed::Box<dyn ::kcl::RecordProcessor> {
                ::std::boxed::Box::new(#processor::new(*self, #policy))
            }
        }
    })
}

/// Which of the supported parameter types `ty` is.
fn classify(ty: &Type) -> syn::Result<Input> {
    let unsupported = || {
        syn::Error::new(
            ty.span(),
            format!("unsupported parameter type for #[kcl::processor]: {SIGNATURE}"),
        )
    };
    match ty {
        Type::Reference(reference) if reference.mutability.is_none() => match &*reference.elem {
            Type::Slice(slice) if last_segment_is(&slice.elem, "Record") => Ok(Input::Batch),
            elem if last_segment_is(elem, "Record") => Ok(Input::Borrowed),
            _ => Err(unsupported()),
        },
        Type::Path(path) => {
            let Some(last) = path.path.segments.last() else {
                return Err(unsupported());
            };
            if last.ident == "Record" && last.arguments.is_none() {
                return Ok(Input::Owned);
            }
            if last.ident == "Json"
                && let PathArguments::AngleBracketed(args) = &last.arguments
                && let [GenericArgument::Type(inner)] =
                    args.args.iter().collect::<Vec<_>>().as_slice()
            {
                return Ok(Input::Json(Box::new((*inner).clone())));
            }
            Err(unsupported())
        }
        _ => Err(unsupported()),
    }
}

fn last_segment_is(ty: &Type, name: &str) -> bool {
    matches!(ty, Type::Path(path)
        if path.qself.is_none()
            && path.path.segments.last().is_some_and(|s| s.ident == name && s.arguments.is_none()))
}

/// `Result<...>` by its last path segment (so `std::result::Result` and aliases such as
/// `anyhow::Result<()>` pass; the type checker does the rest).
fn is_result(ty: &Type) -> bool {
    matches!(ty, Type::Path(path)
        if path.path.segments.last().is_some_and(|s| s.ident == "Result"
            && matches!(s.arguments, PathArguments::AngleBracketed(_))))
}

fn expand_main(args: TokenStream2, function: ItemFn) -> syn::Result<TokenStream2> {
    if !args.is_empty() {
        return Err(syn::Error::new(
            args.span(),
            "#[kcl::main] takes no options",
        ));
    }
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = function;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span,
            "#[kcl::main] needs an `async fn main()`",
        ));
    }
    if !sig.inputs.is_empty() || !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            if sig.inputs.is_empty() {
                sig.generics.span()
            } else {
                sig.inputs.span()
            },
            "#[kcl::main] functions take no parameters and are not generic",
        ));
    }
    sig.asyncness = None;
    let body = quote_spanned!(Span::call_site()=> ::kcl::runner::start(async move #block));
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #body
        }
    })
}
