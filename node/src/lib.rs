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

/// The writer thread allocates and frees a few buffers per entry it applies (redb's pages,
/// encoded values, report keys); with mimalloc a stick ingest runs about a tenth faster
/// than with glibc's allocator. A feature, so that the fuzz targets, built with
/// sanitizers that want to see every allocation, can leave it out.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
