//! Access tokens: where they come from (`credentials`), JWTs and their keys (`jwt`, `jwks`),
//! opaque tokens asked about (`introspection`), and the claims both yield (`claims`, checked
//! by `policy`, and read out once into `facts`).

pub mod claims;
pub mod credentials;
pub mod facts;
pub mod introspection;
pub mod jwks;
pub mod jwt;
pub mod policy;
