//! Devices attached to a cardmesh node: card readers, the e-purse card protocol, SAMs
//! and the 3DES crypto they share. Knows nothing of replication.
