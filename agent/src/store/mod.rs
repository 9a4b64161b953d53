//! The inventory database: the endpoints and findings tables in SQLite (`sqlite`), the
//! endpoints' changes (`changes_table`), and the
//! inventory stage that owns the in-memory inventory and hands batches to a writer thread
//! (`writer`), so SQLite never blocks the processor. Above the inventory and the findings: it
//! keeps both.

pub mod changes_table;
pub mod sqlite;
pub mod writer;

pub use sqlite::{SpecOperation, Store, StoreError};
pub use writer::InventoryStage;
