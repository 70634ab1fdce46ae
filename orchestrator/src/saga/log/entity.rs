//! The saga log's tables as sea-orm entities: `saga`, `saga_step` (the step history) and
//! `saga_action` (operators' actions).

pub mod saga {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "saga")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub saga_id: String,
        pub order_no: String,
        pub saga_type: String,
        /// A [`crate::saga::state::State`], checked by the table.
        pub state: String,
        pub step: String,
        pub attempt: i32,
        pub attempt_base: i32,
        /// Compensation steps still to run, next first: a JSON list of step names.
        pub compensations: Json,
        pub passed_pivot: bool,
        pub abort_requested: bool,
        pub deadline: Option<DateTimeUtc>,
        pub incident: Option<String>,
        /// The saga type's own data.
        pub data: Json,
        pub version: i64,
        /// The W3C `traceparent` of the event that started it: its commands continue that
        /// trace.
        pub traceparent: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod step {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "saga_step")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub saga_id: String,
        pub step: String,
        pub attempt: i32,
        pub command: String,
        pub transport: String,
        pub outcome: Option<String>,
        pub reason: Option<String>,
        pub detail: Option<String>,
        pub sent_at: DateTimeUtc,
        pub replied_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod action {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "saga_action")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub saga_id: String,
        /// An [`crate::saga::log::Action`], checked by the table.
        pub action: String,
        pub step: String,
        pub reason: String,
        pub at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
