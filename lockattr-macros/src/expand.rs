//! The rewrite: one `let` that takes the lock goes in front of the body,
//! whose statements move into a block of the macro's own; the signature and
//! the user's braces stay as they were.

use crate::args::{Args, OnBusy, Target, Wait};
use crate::template::Piece;
use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::{
    Attribute, Error, GenericArgument, PathArguments, ReturnType, Signature, Token, Type,
    TypeParamBound, Visibility,
};

/// The entry point. On error: the compile error *and* the item unchanged,
/// so one mistake gives one error and the rest of the crate still checks.
pub(crate) fn exclusive(args: TokenStream, item: TokenStream) -> TokenStream {
    match syn::parse2::<Args>(args)
        .and_then(|args| Ok((args, syn::parse2::<Function>(item.clone())?)))
    {
        Ok((args, function)) => match rewrite(&args, function) {
            Ok(tokens) => tokens,
            Err(err) => with_error(err, item),
        },
        Err(err) => with_error(err, item),
    }
}

fn with_error(err: Error, item: TokenStream) -> TokenStream {
    let mut tokens = err.into_compile_error();
    tokens.extend(item);
    tokens
}

/// A function with a body, as written: attributes, visibility, signature,
/// and the body's brace group kept as tokens.
struct Function {
    attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    body: Group,
}

impl Parse for Function {
    fn parse(input: ParseStream<'_>) -> syn::Result<Function> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        if input.fork().parse::<Signature>().is_err() {
            return Err(Error::new(
                input.span(),
                "`#[exclusive]` goes on a function (`fn`, `async fn`, a method), not on this item",
            ));
        }
        let sig: Signature = input.parse()?;
        if input.peek(Token![;]) {
            return Err(Error::new_spanned(
                {
                    let (fn_token, ident) = (&sig.fn_token, &sig.ident);
                    quote!(#fn_token #ident)
                },
                "`#[exclusive]` needs a function body to hold the lock around; put it on each implementation of this method instead",
            ));
        }
        let body: Group = input.parse()?;
        if body.delimiter() != Delimiter::Brace || !input.is_empty() {
            return Err(Error::new(
                body.span(),
                "expected the function's body in braces",
            ));
        }
        Ok(Function {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

/// The body's inner attributes (`#![allow(..)]`), which belong to the
/// function, and its statements, kept as tokens.
struct Body {
    inner: Vec<Attribute>,
    stmts: TokenStream,
}

impl Parse for Body {
    fn parse(input: ParseStream<'_>) -> syn::Result<Body> {
        Ok(Body {
            inner: input.call(Attribute::parse_inner)?,
            stmts: input.parse()?,
        })
    }
}

fn rewrite(args: &Args, function: Function) -> syn::Result<TokenStream> {
    let Function {
        attrs,
        vis,
        sig,
        body,
    } = function;
    if let Some(constness) = &sig.constness {
        return Err(Error::new_spanned(
            constness,
            "`#[exclusive]` cannot go on a `const fn`: taking a lock is a run-time act; remove `const`",
        ));
    }
    let krate = match &args.krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::lockattr),
    };
    let private = quote!(#krate::__private);
    // A test must not pass without running: unless the attribute says how
    // to treat busy, a test waits. `#[test]` written above `#[exclusive]`
    // is expanded first and leaves no trace here; the runtime then tells
    // the test by its thread's name, which libtest sets to the test's name.
    let busy_unsaid = args.wait.is_none() && args.on_busy.is_none();
    let seen_test = busy_unsaid && attrs.iter().any(is_test_attribute);
    let lock = lock_expr(args, &krate, seen_test);
    let test = if busy_unsaid && !seen_test && may_be_test(&sig) {
        let name = sig.ident.to_string();
        quote! {
            const {
                if ::core::cfg!(test) {
                    ::core::option::Option::Some(
                        &#private::TestName::new(::core::module_path!(), #name),
                    )
                } else {
                    ::core::option::Option::None
                }
            }
        }
    } else {
        quote!(::core::option::Option::None)
    };
    let ret = match &sig.output {
        ReturnType::Type(_, ty) => Some(&**ty),
        ReturnType::Default => None,
    };
    let hold = quote_spanned!(Span::mixed_site()=> __lockattr_hold);
    let err = quote_spanned!(Span::mixed_site()=> __lockattr_err);
    let Body { inner, stmts } = syn::parse2(body.stream())?;
    let boxed = match (&sig.asyncness, ret) {
        (None, Some(ty)) => boxed_async(ty, &stmts, body.span())?,
        _ => None,
    };
    if let (None, None, Some(ty)) = (&sig.asyncness, &boxed, ret) {
        reject_impl_future(ty)?;
    }
    // For `#[async_trait]`'s shape, what the busy outcome is made of is the
    // future's `Output`, which its `async move` block returns.
    let outcome = match &boxed {
        Some(boxed) => Some(boxed.output),
        None => ret,
    };
    let on_err = busy_or_failed(args, outcome, &private, &err)?;
    let site = quote!({
        static __LOCKATTR_SITE: #private::Site = #private::Site::new();
        &__LOCKATTR_SITE
    });
    let take = |enter: TokenStream| {
        quote! {
            let #hold = match #enter {
                ::core::result::Result::Ok(#hold) => #hold,
                ::core::result::Result::Err(#err) => #on_err,
            };
        }
    };
    // The user's statements get a block of the macro's own. Its span, not
    // the caller's, decides when the temporaries of its tail expression
    // drop (rustc's `resolve_block` reads `blk.span.edition()`): this crate's
    // edition 2024 drops them before the hold, where an edition 2021 block
    // would drop them after it, outside the lock. Located at the user's
    // braces, so diagnostics about the body still point at it.
    let own_block = |stmts: TokenStream, at: Span| {
        let mut block = Group::new(Delimiter::Brace, stmts);
        block.set_span(Span::call_site().located_at(at));
        block
    };
    let names = dynamic_names(args, &sig, &private)?;
    let take_async = || match &names {
        None => take(quote!(#private::enter_async(#site, const { &#lock }).await)),
        // Resolved in a statement of its own, so that the borrowed
        // values are gone before the `.await` (the future stays `Send`).
        Some(names) => {
            let slots = quote_spanned!(Span::mixed_site()=> __lockattr_slots);
            let take = take(quote!(
                #private::enter_slots_async(#slots, const { &#lock }).await
            ));
            quote! {
                let #slots = #private::resolve(const { &#lock }, &[#(#names),*]);
                #take
            }
        }
    };
    let stmts = if sig.asyncness.is_some() {
        // The body becomes an `async move` block polled inside the hold, so
        // that nested `#[exclusive]` calls see this task as the holder.
        // `return` and `?` keep their meaning inside the block.
        let take = take_async();
        let user = own_block(stmts, body.span());
        quote! {
            #(#inner)*
            #take
            #private::scoped(&#hold, async move #user).await
        }
    } else if let Some(boxed) = boxed {
        // As for an `async fn`, inside the future that the function returns
        // (tracing's `#[instrument]` does the same with its span): the lock
        // is taken when the future is first polled and let go when it
        // completes, not when the function returns it.
        let take = take_async();
        let BoxedAsync {
            pin,
            paren,
            async_token,
            move_token,
            block,
            ..
        } = boxed;
        let user = own_block(block.stream(), block.span());
        let future = own_block(
            quote! {
                #take
                #private::scoped(&#hold, async move #user).await
            },
            block.span(),
        );
        let mut call = Group::new(
            Delimiter::Parenthesis,
            quote!(#async_token #move_token #future),
        );
        call.set_span(paren);
        quote!(#(#inner)* #pin #call)
    } else {
        let check = named(ret).map(|ty| {
            // The call ends on the type's last token, so that rustc
            // underlines the whole type when it is a future.
            let end = ty.to_token_stream().into_iter().last().map(|tt| tt.span());
            let kind = quote_spanned!(end.unwrap_or_else(Span::call_site)=> .kind());
            quote_spanned! {ty_span(ty)=>
                {
                    #[allow(unused_imports)] // only one of the two applies
                    use #private::{ReturnsFuture as _, ReturnsValue as _};
                    #private::not_a_future((&#private::Check::<#ty>::new())#kind);
                }
            }
        });
        let take = match &names {
            None => take(quote!(#private::enter(#site, const { &#lock }, #test))),
            Some(names) => take(quote!(
                #private::enter_names(const { &#lock }, &[#(#names),*], #test)
            )),
        };
        let user = own_block(stmts, body.span());
        quote!(#(#inner)* #check #take #user)
    };
    let mut new_body = Group::new(Delimiter::Brace, stmts);
    new_body.set_span(body.span());
    Ok(quote!(#(#attrs)* #vis #sig #new_body))
}

/// What `#[async_trait]` makes of an `async fn`, the one shape of a sync fn
/// returning a future that `#[exclusive]` takes: the return type
/// `Pin<Box<dyn Future<Output = R> + ...>>` (any further bounds: `Send`,
/// `'async_trait`, none with `#[async_trait(?Send)]`) and a body that is
/// `Box::pin(async move { ... })` and nothing else. Anything before or
/// around it would run when the function is called, outside the lock.
struct BoxedAsync<'a> {
    /// `R`, which the busy outcome is made of.
    output: &'a Type,
    /// `Box::pin`, as written.
    pin: syn::Path,
    paren: Span,
    async_token: Token![async],
    move_token: Token![move],
    block: Group,
}

/// `Some` for `#[async_trait]`'s shape; `None` for a return type that is not
/// `Pin<Box<dyn Future<..>>>` (the sync path judges it); an error for that
/// return type with any other body.
fn boxed_async<'a>(
    ty: &'a Type,
    stmts: &TokenStream,
    body: Span,
) -> syn::Result<Option<BoxedAsync<'a>>> {
    let Some(output) = boxed_future_output(ty) else {
        return Ok(None);
    };
    let parser = |input: ParseStream<'_>| {
        let pin = syn::Path::parse_mod_style(input)?;
        let content;
        let paren = syn::parenthesized!(content in input);
        let async_token = content.parse()?;
        let move_token = content.parse()?;
        let block: Group = content.parse()?;
        let is_box_pin = {
            let mut segments = pin.segments.iter().rev();
            segments.next().is_some_and(|s| s.ident == "pin")
                && segments.next().is_some_and(|s| s.ident == "Box")
        };
        if !is_box_pin
            || block.delimiter() != Delimiter::Brace
            || !content.is_empty()
            || !input.is_empty()
        {
            return Err(input.error("not Box::pin(async move { .. })"));
        }
        Ok(BoxedAsync {
            output,
            pin,
            paren: paren.span.join(),
            async_token,
            move_token,
            block,
        })
    };
    match syn::parse::Parser::parse2(parser, stmts.clone()) {
        Ok(boxed) => Ok(Some(boxed)),
        Err(_) => {
            let text = format!(
                "`#[exclusive]` on a function that is not `async` but returns a future: it can hold the lock inside the future only when the body is `Box::pin(async move {{ ... }})` and nothing else, as `#[async_trait]` writes it; {ALTERNATIVES}"
            );
            Err(match stmts.is_empty() {
                true => Error::new(body, text),
                false => Error::new_spanned(stmts, text),
            })
        }
    }
}

/// What to write instead of a sync fn returning a future.
const ALTERNATIVES: &str = "make it an `async fn` (in a trait too: a native `async fn`), or, for a trait object, put `#[async_trait]` on the trait and its impl and `#[exclusive]` on the `async fn` inside the impl";

/// `R` of `Pin<Box<dyn Future<Output = R> + ...>>`, whatever the paths
/// (`::core::pin::Pin`, `std::future::Future`).
fn boxed_future_output(ty: &Type) -> Option<&Type> {
    let pin = only_argument(ungroup(ty), "Pin")?;
    let boxed = only_argument(ungroup(pin), "Box")?;
    let Type::TraitObject(object) = ungroup(boxed) else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let future = bound.path.segments.last()?;
        let PathArguments::AngleBracketed(args) = &future.arguments else {
            return None;
        };
        if future.ident != "Future" {
            return None;
        }
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
            _ => None,
        })
    })
}

/// `T` of `Name<T>`.
fn only_argument<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match (
        path.qself.is_none() && last.ident == name,
        args.args.len(),
        args.args.first(),
    ) {
        (true, 1, Some(GenericArgument::Type(ty))) => Some(ty),
        _ => None,
    }
}

/// A type without the invisible groups of a `macro_rules!` `$ty` and the
/// parentheses around it.
fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => ungroup(&group.elem),
        Type::Paren(paren) => ungroup(&paren.elem),
        _ => ty,
    }
}

/// `Lock::new(NAME).dir(..).shared().wait_for(..)`, evaluated in a `const`
/// block, so a bad `const` name fails to compile. For names made at each
/// call, `Lock::__names()` with the same options.
fn lock_expr(args: &Args, krate: &TokenStream, test: bool) -> TokenStream {
    let mut lock = match args.targets.as_slice() {
        [Target::Name(name)] => {
            quote_spanned!(name.span()=> #krate::Lock::new(#krate::LockName::new(#name)))
        }
        [Target::Const(path)] => {
            let check = const_name(path, &quote!(#krate::__private));
            quote_spanned!(const_span(path)=> #krate::Lock::new(#check))
        }
        [Target::File(path)] => quote!(#krate::Lock::at_path(#path)),
        _ => quote!(#krate::Lock::__names()),
    };
    if let Some(dir) = &args.dir {
        lock.extend(quote!(.dir(#dir)));
    }
    if args.shared {
        lock.extend(quote!(.shared()));
    }
    match args.wait {
        Some(Wait::Forever) => lock.extend(quote!(.wait())),
        Some(Wait::For(ms)) => {
            lock.extend(quote!(.wait_for(::core::time::Duration::from_millis(#ms))))
        }
        None if test => lock.extend(quote!(.wait())),
        None => {}
    }
    lock
}

/// `__private::const_name(PATH)`, all spanned at the path: a `const` of
/// another type than `LockName` gets one error, there.
fn const_name(path: &syn::Path, private: &TokenStream) -> TokenStream {
    let span = const_span(path);
    let private = respan(private.clone(), span);
    quote_spanned!(span=> #private::const_name(#path))
}

/// `tokens`, every one spanned at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(group) = &tt {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tt = TokenTree::Group(inner);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

fn const_span(path: &syn::Path) -> Span {
    path.segments
        .last()
        .map_or_else(Span::call_site, |s| s.ident.span())
}

/// The names, as `__private::Name`s, when they are made at each call: a
/// name with placeholders, or several names. `None` for one fixed name.
fn dynamic_names(
    args: &Args,
    sig: &Signature,
    private: &TokenStream,
) -> syn::Result<Option<Vec<TokenStream>>> {
    if let [Target::Name(_) | Target::Const(_) | Target::File(_)] = args.targets.as_slice() {
        return Ok(None);
    }
    let fixed = |text: TokenStream| quote!(#private::Part::Fixed(#text));
    let names = args.targets.iter().map(|target| {
        Ok(match target {
            Target::Name(lit) => {
                let part = fixed(lit.to_token_stream());
                quote!(#private::Name::new(#lit, &[#part]))
            }
            Target::Const(path) => {
                let check = const_name(path, private);
                let name = quote_spanned!(const_span(path)=> const { #check.as_str() });
                let part = fixed(name.clone());
                quote!(#private::Name::new(#name, &[#part]))
            }
            Target::Template(lit, pieces) => {
                let parts = pieces
                    .iter()
                    .map(|piece| match piece {
                        Piece::Fixed(text) => Ok(fixed(text.to_token_stream())),
                        Piece::Param(name) => placeholder_value(param(sig, lit, name)?, private),
                        Piece::Field(field) => {
                            let receiver = receiver(sig, lit, field)?;
                            // Checked in `template.rs`: an identifier.
                            let mut field: syn::Ident = syn::parse_str(field)?;
                            field.set_span(lit.span());
                            placeholder_value(quote!(#receiver.#field), private)
                        }
                    })
                    .collect::<syn::Result<Vec<_>>>()?;
                quote!(#private::Name::new(#lit, &[#(#parts),*]))
            }
            Target::File(path) => {
                return Err(Error::new_spanned(
                    path,
                    "`path = ...` names one whole file and cannot go with other lock names",
                ));
            }
        })
    });
    names.collect::<syn::Result<Vec<_>>>().map(Some)
}

/// A placeholder's value as a `__private::Part`: its bytes when it has
/// them (`&str`, `String`, `Path`, `OsStr`), else its `Display`; a type
/// with neither is an error at the parameter.
fn placeholder_value(value: TokenStream, private: &TokenStream) -> syn::Result<TokenStream> {
    let span = value
        .clone()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |tt| tt.span());
    Ok(quote_spanned! {span=>
        {
            #[allow(unused_imports)] // only one of the two applies
            use #private::{ByBytes as _, ByDisplay as _};
            (&#private::Value(&#value)).part()
        }
    })
}

/// The parameter a placeholder names, as the signature spells it (so that
/// an error about its type points at the parameter).
fn param(sig: &Signature, lit: &syn::LitStr, name: &str) -> syn::Result<TokenStream> {
    let found = sig.inputs.iter().find_map(|input| match input {
        syn::FnArg::Typed(typed) => match &*typed.pat {
            // `{type}` and `{r#type}` both name a parameter `r#type`.
            syn::Pat::Ident(pat) if unraw(&pat.ident) == name.trim_start_matches("r#") => {
                Some(pat.ident.to_token_stream())
            }
            _ => None,
        },
        syn::FnArg::Receiver(_) => None,
    });
    found.ok_or_else(|| {
        let params: Vec<String> = sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                syn::FnArg::Typed(typed) => match &*typed.pat {
                    syn::Pat::Ident(pat) => Some(format!("`{}`", pat.ident)),
                    _ => None,
                },
                syn::FnArg::Receiver(_) => Some("`self.field`".to_owned()),
            })
            .collect();
        let have = match params.is_empty() {
            true => "it has no parameters".to_owned(),
            false => format!("its parameters are {}", params.join(", ")),
        };
        Error::new(
            lit.span(),
            format!(
                "the lock name's placeholder `{{{name}}}` names no parameter of `{}`; {have}",
                sig.ident
            ),
        )
    })
}

fn unraw(ident: &syn::Ident) -> String {
    syn::ext::IdentExt::unraw(ident).to_string()
}

/// The receiver a `{self.field}` placeholder needs.
fn receiver(sig: &Signature, lit: &syn::LitStr, field: &str) -> syn::Result<TokenStream> {
    match sig.receiver() {
        Some(receiver) => Ok(receiver.self_token.to_token_stream()),
        None => Err(Error::new(
            lit.span(),
            format!(
                "the placeholder `{{self.{field}}}` needs a method with `self`; `{}` has none",
                sig.ident
            ),
        )),
    }
}

/// `#[test]`, `#[tokio::test]`, `#[::core::prelude::v1::test]` (which
/// `#[tokio::test]` leaves when written above `#[exclusive]`), and the like.
fn is_test_attribute(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "test")
}

/// Whether libtest could run this function as a test: `fn name()`, with
/// neither parameters nor generics. (An `async fn` becomes a test only
/// through an attribute such as `#[tokio::test]`, which leaves a plain
/// `fn` behind when it expands first.)
fn may_be_test(sig: &Signature) -> bool {
    sig.asyncness.is_none() && sig.inputs.is_empty() && sig.generics.params.is_empty()
}

/// What the function returns when the lock cannot be had: `on_busy` when
/// busy, else the return type's default outcome.
fn busy_or_failed(
    args: &Args,
    ret: Option<&Type>,
    private: &TokenStream,
    err: &TokenStream,
) -> syn::Result<TokenStream> {
    let writable = writable(ret);
    let Some(on_busy) = &args.on_busy else {
        return Ok(match (writable, ret) {
            // Spanned at the type, so "no busy outcome for `i32`" points there.
            (Some(writable), Some(ty)) => {
                quote_spanned!(ty_span(ty)=> return <#writable as #private::Outcome>::from_error(#err))
            }
            (None, Some(ty)) if !nameable(ty) => {
                return Err(Error::new_spanned(
                    ty,
                    "`#[exclusive]` cannot tell what this function should return when the lock is busy; add `on_busy = ...` with the value to return, or a closure that makes it from the busy `lockattr::Error`, as in `on_busy = |err| ...` (a `Result<impl Trait, E>` needs neither when `E: From<lockattr::Error>`)",
                ));
            }
            _ => quote!(return #private::Outcome::from_error(#err)),
        });
    };
    // A setup failure still follows the return type: `Err` for a `Result`
    // whose error converts, a panic for anything else.
    let failed = match writable {
        Some(ty) => quote! {
            #[allow(unused_imports)] // only one of the two applies
            use #private::{FailAsErr as _, FailAsPanic as _};
            return (&#private::Fail::<#ty>::new()).fail(#err);
        },
        None => quote!(#private::fail(#err)),
    };
    let value = match on_busy {
        OnBusy::Value(value) => value.to_token_stream(),
        // Through a function whose bound gives the closure its argument's
        // type, so that `|err| err.holder()` needs no annotation.
        // All of it at the closure, where rustc's errors about it belong.
        OnBusy::Closure(closure) => {
            let span = closure.inputs_begin.span;
            let call = respan(quote!(#private::on_busy), span);
            let err = respan(err.clone(), Span::mixed_site().located_at(span));
            quote_spanned!(span=> #call(#err, #closure))
        }
    };
    // `on_busy` may diverge (`std::process::exit(0)`): that is no mistake.
    // Nor are parentheses around a closure meant as the value.
    Ok(quote! {{
        if #err.is_busy() {
            #[allow(unreachable_code, unused_parens, clippy::diverging_sub_expression)]
            return #value;
        }
        #failed
    }})
}

/// The return type as the body can write it, when it is a value: the type
/// itself; for a `Result` whose `Ok` type is an `impl Trait`, which the
/// body cannot name, `Result<_, E>`, enough to pick the busy outcome.
fn writable(ret: Option<&Type>) -> Option<TokenStream> {
    if let Some(ty) = named(ret) {
        return Some(ty.to_token_stream());
    }
    let Type::Path(ty) = ungroup(ret?) else {
        return None;
    };
    let last = ty.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let Some(GenericArgument::Type(ok)) = args.args.first() else {
        return None;
    };
    let rest: Vec<_> = args.args.pairs().skip(1).collect();
    if ty.qself.is_some()
        || last.ident != "Result"
        || !rest
            .iter()
            .all(|arg| nameable_tokens(arg.to_token_stream()))
    {
        return None;
    }
    // The user's own tokens but for `_`, so that an error about the type
    // underlines all of it.
    let init = ty.path.segments.pairs().take(ty.path.segments.len() - 1);
    let (leading, ident, lt, gt) = (
        &ty.path.leading_colon,
        &last.ident,
        &args.lt_token,
        &args.gt_token,
    );
    let comma = args
        .args
        .pairs()
        .next()
        .and_then(|pair| pair.punct().copied());
    let infer = quote_spanned!(ty_span(ok)=> _);
    Some(quote!(#leading #(#init)* #ident #lt #infer #comma #(#rest)* #gt))
}

/// Refuses an `impl Future` (or `impl IntoFuture`) return type: the lock
/// would be released when the function returns the future, before it runs.
/// Only `impl Trait` is judged by its name, since the body cannot name it,
/// and `Pin<Box<dyn Future<..>>>` by its shape (`boxed_async`); every other
/// type is judged by what it is (`__private::Check`), so a user's own type
/// called `Future` is no future, and an alias of `Pin<Box<dyn Future>>` is
/// one.
fn reject_impl_future(ty: &Type) -> syn::Result<()> {
    if impl_future(ty) {
        return Err(Error::new_spanned(
            ty,
            format!(
                "`#[exclusive]` on a function that is not `async` but returns a future: the lock would be released when the function returns the future, before the future runs; {ALTERNATIVES}"
            ),
        ));
    }
    Ok(())
}

/// Whether the type is, or has among its type arguments, an `impl Future`
/// or `impl IntoFuture`.
fn impl_future(ty: &Type) -> bool {
    match ty {
        Type::ImplTrait(ty) => ty.bounds.iter().any(|bound| {
            matches!(bound, TypeParamBound::Trait(bound)
                if bound.path.segments.last().is_some_and(|segment| {
                    segment.ident == "Future" || segment.ident == "IntoFuture"
                }))
        }),
        Type::Path(ty) => ty.path.segments.iter().any(|segment| {
            matches!(&segment.arguments, PathArguments::AngleBracketed(args)
                if args.args.iter().any(|arg| matches!(arg, GenericArgument::Type(ty) if impl_future(ty))))
        }),
        Type::Tuple(ty) => ty.elems.iter().any(impl_future),
        Type::Array(ty) => impl_future(&ty.elem),
        Type::Group(ty) => impl_future(&ty.elem),
        Type::Paren(ty) => impl_future(&ty.elem),
        Type::Ptr(ty) => impl_future(&ty.elem),
        Type::Reference(ty) => impl_future(&ty.elem),
        Type::Slice(ty) => impl_future(&ty.elem),
        _ => false,
    }
}

/// The return type, when the expansion can name it and it is a value:
/// not `()`, not `!`, and not `impl Trait` (which the body cannot name).
fn named(ret: Option<&Type>) -> Option<&Type> {
    ret.filter(|ty| nameable(ty) && !matches!(ty, Type::Never(_)) && !is_unit(ty))
}

/// Whether the type can be written inside the body (`impl Trait` cannot).
fn nameable(ty: &Type) -> bool {
    nameable_tokens(ty.to_token_stream())
}

fn nameable_tokens(tokens: TokenStream) -> bool {
    !mentions(tokens, &|ident| ident == "impl")
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(tuple) if tuple.elems.is_empty())
}

fn mentions(tokens: TokenStream, hit: &dyn Fn(&proc_macro2::Ident) -> bool) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(ident) => hit(&ident),
        TokenTree::Group(group) => mentions(group.stream(), hit),
        _ => false,
    })
}

fn ty_span(ty: &Type) -> Span {
    ty.to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |tt| tt.span())
}
