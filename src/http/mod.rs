//! HTTP/1.1 codec, hand-rolled on `httparse`: request heads, `Content-Length` and chunked
//! bodies, the route table, responses and query strings. Pure functions over byte
//! slices; the connection loop is `net::http`.

pub mod chunked;
pub mod query;
pub mod request;
pub mod response;
pub mod route;
