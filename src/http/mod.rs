//! HTTP/1.1, hand-rolled on `httparse`: one buffer per connection, keep-alive and
//! pipelining, `Content-Length` and chunked bodies, a limit on every size and on time.

pub mod chunked;
pub mod conn;
pub mod query;
pub mod request;
pub mod response;
pub mod route;
