//! Shared helpers for cardmesh's whole-system scenarios.
