//! A cardmesh node: the redb store that holds its feeds and views, its identity and
//! enrollment, and (growing) the POS, sync and reports built on them. The `cardmesh`
//! binary is a thin shell over this library.

pub mod config;
pub mod console;
pub mod demo;
pub mod forecourt;
pub mod handle;
pub mod hq;
pub mod identity;
pub mod keys;
pub mod link;
pub mod pos;
pub mod sam;
pub mod seal;
pub mod station;
pub mod status;
pub mod store;
pub mod usb;
