//! One request as a value. `extract` reads what the request presented, `decider` returns the
//! next step from it and a read-only view of the `worker`, and `request` applies that step in
//! one place: an allowed request goes on rewritten by `upstream`, a refused one gets the reply
//! `refuse` sends. The `worker` is the per-VM state (settings, `keys` and their fetching, the
//! tokens it has `known`, the bounded caches of `cache`, the DPoP proofs of `replay`) shared by
//! the root context and every request.

pub mod cache;
pub mod decider;
pub mod extract;
pub mod keys;
pub mod known;
pub mod refuse;
pub mod replay;
pub mod request;
pub mod upstream;
pub mod worker;
