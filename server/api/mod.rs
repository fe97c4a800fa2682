//! The server's faces: the GraphQL API and the HTTP routes that carry it.

pub mod graphql;
pub mod http;
