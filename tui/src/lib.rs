//! The shop manager's console. Renders a node's state through the node's public handle
//! and never opens the store itself.
