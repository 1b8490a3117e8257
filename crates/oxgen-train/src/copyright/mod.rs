//! Copyright safety: the pieces of near access-free (NAF) training and sampling (Vyas, Kakade
//! & Barak, 2023). Models are trained on disjoint shards of the data ([`shard`]), so that each
//! protected item sits in at most one of them; sampling combines them token by token
//! ([`oxgen_models::ar::naf`]).

pub mod canary;
pub mod duplicates;
pub mod extraction;
pub mod images;
pub mod shard;
pub mod sharded;
pub mod sharded_diffusion;
