//! What the retry layer can send again.

use bytes::Bytes;

/// Requests that the retry layer can send again.
///
/// Implemented for `http::Request<B>` when the body can be copied cheaply
/// ([`ReplayBody`]). A request whose `try_clone` gives `None` is sent once and
/// never retried.
pub trait ReplayRequest: Sized {
    /// A copy to send on the next attempt, or `None` if the request cannot be
    /// replayed.
    fn try_clone(&self) -> Option<Self>;
}

/// Request bodies that can be sent again.
///
/// Buffered bodies (`Full<Bytes>`, `Empty<Bytes>`, `Bytes`, `String`, `Vec<u8>`,
/// `()`) return a copy; streaming bodies (`hyper::body::Incoming`, boxed bodies)
/// return `None`.
pub trait ReplayBody: Sized {
    /// A copy of the body, or `None` if it cannot be replayed.
    fn try_clone_body(&self) -> Option<Self>;
}

macro_rules! replay_by_clone {
    ($($ty:ty),* $(,)?) => {$(
        impl ReplayBody for $ty {
            fn try_clone_body(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}

replay_by_clone!(
    http_body_util::Full<Bytes>,
    http_body_util::Empty<Bytes>,
    Bytes,
    String,
    Vec<u8>,
    &'static str,
    (),
);

impl ReplayBody for hyper::body::Incoming {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::BoxBody<D, E> {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::UnsyncBoxBody<D, E> {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

impl<B: ReplayBody> ReplayRequest for http::Request<B> {
    fn try_clone(&self) -> Option<Self> {
        let body = self.body().try_clone_body()?;
        let mut copy = http::Request::new(body);
        *copy.method_mut() = self.method().clone();
        *copy.uri_mut() = self.uri().clone();
        *copy.version_mut() = self.version();
        *copy.headers_mut() = self.headers().clone();
        *copy.extensions_mut() = self.extensions().clone();
        Some(copy)
    }
}
