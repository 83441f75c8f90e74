//! Slots: the leaves through which a continuous query's physical plan, planned once, is
//! fed new rows on every step. A [`SlotTable`] stands in the logical plan where a source
//! (or the state an operator keeps) was; its scan is a [`SlotExec`] that, each time the
//! plan is executed, reads whatever batches the runtime has put in the slot.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};

/// Batches waiting to be read by the next execution of the plan.
#[derive(Debug, Default)]
pub struct Slot {
    batches: Mutex<Vec<RecordBatch>>,
}

impl Slot {
    pub fn set(&self, batches: Vec<RecordBatch>) {
        *self.batches.lock().unwrap_or_else(|p| p.into_inner()) = batches;
    }

    fn current(&self) -> Vec<RecordBatch> {
        self.batches.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A relation whose rows are the slot's batches at execution time.
#[derive(Debug)]
pub struct SlotTable {
    schema: SchemaRef,
    slot: Arc<Slot>,
}

impl SlotTable {
    pub fn new(schema: SchemaRef) -> (SlotTable, Arc<Slot>) {
        let slot = Arc::new(Slot::default());
        (SlotTable { schema, slot: slot.clone() }, slot)
    }
}

#[async_trait]
impl TableProvider for SlotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(indices) => Arc::new(self.schema.project(indices)?),
            None => self.schema.clone(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(SlotExec {
            slot: self.slot.clone(),
            projection: projection.cloned(),
            schema,
            properties: Arc::new(properties),
        }))
    }
}

#[derive(Debug)]
pub struct SlotExec {
    slot: Arc<Slot>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for SlotExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlotExec")
    }
}

impl ExecutionPlan for SlotExec {
    fn name(&self) -> &str {
        "SlotExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        assert!(children.is_empty(), "SlotExec is a leaf");
        Ok(self)
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        assert_eq!(partition, 0, "SlotExec has one partition");
        let projection = self.projection.clone();
        let batches: Vec<DfResult<RecordBatch>> = self
            .slot
            .current()
            .into_iter()
            .map(|batch| match &projection {
                Some(indices) => batch.project(indices).map_err(Into::into),
                None => Ok(batch),
            })
            .collect();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), futures::stream::iter(batches))))
    }
}
