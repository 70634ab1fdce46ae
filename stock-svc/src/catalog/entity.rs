//! The catalog tables: show -> session -> ticket tier.

pub mod show {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "show")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub title: String,
        pub venue: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod session {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "session")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub show_id: i64,
        pub starts_at: DateTimeUtc,
        pub sale_opens_at: DateTimeUtc,
        pub sale_closes_at: DateTimeUtc,
        /// The most tickets one buyer may hold across every tier of the session.
        pub per_user_limit: i32,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod tier {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tier")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub session_id: i64,
        pub name: String,
        pub price_cents: i64,
        pub total: i64,
        /// The tier's own cap per buyer, within the session's limit; 0 = none.
        pub per_user_limit: i32,
        // The table's `sold` column is a counter earlier versions kept up to date with every
        // confirm; tickets sold are now the tier's confirmed ledger rows (`ledger::totals`).
        // The column stays (unread) while replicas of the earlier version may still run
        // beside this one during a rolling deploy; a later release drops it.
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
