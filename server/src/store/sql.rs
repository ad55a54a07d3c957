//! The SQL executor the server's code writes against: a connection ([`Conn`]), a write
//! transaction on it ([`Tx`]), a read snapshot ([`Snapshot`]), prepared statements, rows, and
//! the values bound to and read from them.
//!
//! It is SQLite underneath today, and shaped so that a second backend (PostgreSQL, see
//! docs/storage.md) fits behind the same types: parameters and columns go through this module's
//! own [`ToSql`] and [`FromSql`], errors through [`DatabaseError`], and transactions are begun
//! and ended here rather than by the driver's own transaction types. Nothing outside `store/`
//! and `db.rs` names the driver.

use std::borrow::Cow;
use std::ops::Deref;

use super::postgres::{Param, PgConn};
use crate::error::{Error, Result};

/// A database connection. [`crate::db::Db`] owns them and lends them out.
pub struct Conn {
    inner: Backend,
}

enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgConn>),
}

impl Conn {
    /// Wraps an open SQLite connection.
    pub(crate) fn sqlite(inner: rusqlite::Connection) -> Conn {
        Conn {
            inner: Backend::Sqlite(inner),
        }
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user@host:port/db`).
    pub fn postgres(url: &str) -> Result<Conn> {
        Ok(Conn {
            inner: Backend::Postgres(Box::new(PgConn::connect(url)?)),
        })
    }

    /// Whether the connection can no longer be used (PostgreSQL's socket closed).
    pub(crate) fn is_broken(&self) -> bool {
        match &self.inner {
            Backend::Sqlite(_) => false,
            Backend::Postgres(c) => c.is_closed(),
        }
    }

    /// Whether the connection is to PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.inner, Backend::Postgres(_))
    }

    /// The SQLite connection underneath, for database setup (`db.rs`).
    pub(crate) fn raw(&self) -> Result<&rusqlite::Connection> {
        match &self.inner {
            Backend::Sqlite(c) => Ok(c),
            Backend::Postgres(_) => Err(Error::Internal(
                "a SQLite operation on a PostgreSQL connection".into(),
            )),
        }
    }

    /// Runs `sql` with `params`; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// Runs `sql`, which may hold several statements, without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.inner {
            Backend::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Backend::Postgres(c) => Ok(c.batch(sql)?),
        }
    }

    /// Runs query `sql` and maps its first row with `f`; [`ErrorKind::NoRows`] when it has
    /// none (see [`OptionalExtension::optional`]).
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// Prepares `sql` once for this call.
    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        let inner = match &self.inner {
            Backend::Sqlite(c) => StatementInner::Once(c.prepare(sql)?),
            Backend::Postgres(c) => StatementInner::Postgres(c, c.prepare(sql, false)?),
        };
        Ok(Statement { inner })
    }

    /// Prepares `sql`, reusing the connection's cached statement for the same text.
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        let inner = match &self.inner {
            Backend::Sqlite(c) => StatementInner::Cached(c.prepare_cached(sql)?),
            Backend::Postgres(c) => StatementInner::Postgres(c, c.prepare(sql, true)?),
        };
        Ok(Statement { inner })
    }

    fn in_transaction(&self) -> bool {
        match &self.inner {
            Backend::Sqlite(c) => !c.is_autocommit(),
            Backend::Postgres(c) => c.in_transaction.get(),
        }
    }

    /// Begins a read snapshot: every read through it sees the database as of its first one,
    /// whatever writers commit meanwhile. It ends when dropped.
    pub fn snapshot(&self) -> Result<Snapshot<'_>> {
        self.execute_batch(match self.inner {
            Backend::Sqlite(_) => "BEGIN DEFERRED",
            Backend::Postgres(_) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        })?;
        Ok(Snapshot { conn: self })
    }

    /// Begins the write transaction `Db::write` runs its closure in. On PostgreSQL it is
    /// READ COMMITTED: `Db` makes its first statement take the write lock, and every statement
    /// after that sees all that earlier writers committed, as under SQLite's one writer (a
    /// snapshot isolation level would fix its snapshot before the lock was granted).
    pub(crate) fn begin_write(&self) -> Result<Tx<'_>> {
        if self.in_transaction() {
            // A transaction a panic or a failed rollback left open.
            self.execute_batch("ROLLBACK")?;
        }
        self.execute_batch(match self.inner {
            Backend::Sqlite(_) => "BEGIN IMMEDIATE",
            Backend::Postgres(_) => "BEGIN ISOLATION LEVEL READ COMMITTED",
        })?;
        Ok(Tx {
            conn: self,
            done: false,
        })
    }
}

/// A write transaction. It derefs to the [`Conn`] it runs on; dropped without
/// [`Tx::commit`], it rolls back.
pub struct Tx<'c> {
    conn: &'c Conn,
    done: bool,
}

impl Tx<'_> {
    /// Commits the transaction.
    pub(crate) fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.execute_batch("COMMIT")
    }
}

impl Deref for Tx<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done
            && self.conn.in_transaction()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %e, "rolling back a write failed");
        }
    }
}

/// A read snapshot ([`Conn::snapshot`]). It derefs to its [`Conn`].
pub struct Snapshot<'c> {
    conn: &'c Conn,
}

impl Deref for Snapshot<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        if self.conn.in_transaction()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %e, "ending a read snapshot failed");
        }
    }
}

/// A prepared statement.
pub struct Statement<'c> {
    inner: StatementInner<'c>,
}

enum StatementInner<'c> {
    Once(rusqlite::Statement<'c>),
    Cached(rusqlite::CachedStatement<'c>),
    Postgres(&'c PgConn, postgres::Statement),
}

impl Statement<'_> {
    /// How many columns the statement's rows have.
    pub fn column_count(&self) -> usize {
        match &self.inner {
            StatementInner::Once(s) => s.column_count(),
            StatementInner::Cached(s) => s.column_count(),
            StatementInner::Postgres(_, s) => s.columns().len(),
        }
    }

    /// Runs the statement with `params`; the number of rows it changed.
    pub fn execute(&mut self, params: impl Params) -> Result<usize> {
        let values = params.values()?;
        match &mut self.inner {
            StatementInner::Once(s) => Ok(s.execute(rusqlite::params_from_iter(values.iter()))?),
            StatementInner::Cached(s) => Ok(s.execute(rusqlite::params_from_iter(values.iter()))?),
            StatementInner::Postgres(c, s) => {
                let params = pg_params(&values);
                let n = c
                    .client()
                    .execute(&*s, &pg_refs(&params))
                    .map_err(DatabaseError::from)?;
                Ok(n as usize)
            }
        }
    }

    /// Runs the query and maps its first row with `f`; [`ErrorKind::NoRows`] when it has none.
    pub fn query_row<T>(
        &mut self,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut rows = self.query(params)?;
        match rows.next()? {
            Some(row) => f(&row),
            None => Err(DatabaseError::no_rows().into()),
        }
    }

    /// Whether the query returns a row.
    pub fn exists(&mut self, params: impl Params) -> Result<bool> {
        Ok(self.query(params)?.next()?.is_some())
    }

    /// Runs the query; its rows, read one by one.
    pub fn query(&mut self, params: impl Params) -> Result<Rows<'_>> {
        let values = params.values()?;
        let inner = match &mut self.inner {
            StatementInner::Once(s) => {
                RowsInner::Sqlite(s.query(rusqlite::params_from_iter(values.iter()))?)
            }
            StatementInner::Cached(s) => {
                RowsInner::Sqlite(s.query(rusqlite::params_from_iter(values.iter()))?)
            }
            StatementInner::Postgres(c, s) => {
                let params = pg_params(&values);
                let rows = c
                    .client()
                    .query(&*s, &pg_refs(&params))
                    .map_err(DatabaseError::from)?;
                RowsInner::Postgres(rows, 0)
            }
        };
        Ok(Rows { inner })
    }

    /// Runs the query; its rows, each mapped by `f` as it is read.
    pub fn query_map<T, F>(&mut self, params: impl Params, f: F) -> Result<MappedRows<'_, F>>
    where
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        Ok(MappedRows {
            rows: self.query(params)?,
            f,
        })
    }
}

fn pg_params<'a>(values: &'a [ToSqlOutput<'a>]) -> Vec<Param<'a>> {
    values.iter().map(Param).collect()
}

fn pg_refs<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

/// The rows of a query, read one by one.
pub struct Rows<'s> {
    inner: RowsInner<'s>,
}

enum RowsInner<'s> {
    Sqlite(rusqlite::Rows<'s>),
    /// PostgreSQL's rows come whole; the next one to read.
    Postgres(Vec<postgres::Row>, usize),
}

impl Rows<'_> {
    /// The next row, if any.
    #[allow(clippy::should_implement_trait)] // a row borrows from the cursor: no Iterator.
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        match &mut self.inner {
            RowsInner::Sqlite(rows) => Ok(rows.next()?.map(|r| Row {
                inner: RowInner::Sqlite(r),
            })),
            RowsInner::Postgres(rows, next) => {
                let row = rows.get(*next);
                *next += 1;
                Ok(row.map(|r| Row {
                    inner: RowInner::Postgres(r),
                }))
            }
        }
    }
}

/// The rows of [`Statement::query_map`], mapped as they are read.
pub struct MappedRows<'s, F> {
    rows: Rows<'s>,
    f: F,
}

impl<T, F> Iterator for MappedRows<'_, F>
where
    F: FnMut(&Row<'_>) -> Result<T>,
{
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        match self.rows.next() {
            Ok(Some(row)) => Some((self.f)(&row)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// One row of a query.
pub struct Row<'r> {
    inner: RowInner<'r>,
}

enum RowInner<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

impl Row<'_> {
    /// Column `index` (from 0), converted to `T`.
    pub fn get<I: ColumnIndex, T: FromSql>(&self, index: I) -> Result<T> {
        let index = index.index();
        let value = self.get_ref(index)?;
        T::from_sql(value).map_err(|reason| {
            DatabaseError::new(
                ErrorKind::Conversion,
                format!("column {index}: {reason}"),
                None,
            )
            .into()
        })
    }

    /// Column `index` (from 0) as it is stored.
    pub fn get_ref<I: ColumnIndex>(&self, index: I) -> Result<ValueRef<'_>> {
        let index = index.index();
        let row = match self.inner {
            RowInner::Sqlite(row) => row,
            RowInner::Postgres(row) => return Ok(super::postgres::column(row, index)?),
        };
        Ok(match row.get_ref(index)? {
            rusqlite::types::ValueRef::Null => ValueRef::Null,
            rusqlite::types::ValueRef::Integer(i) => ValueRef::Integer(i),
            rusqlite::types::ValueRef::Real(r) => ValueRef::Real(r),
            rusqlite::types::ValueRef::Text(t) => {
                ValueRef::Text(std::str::from_utf8(t).map_err(|e| {
                    DatabaseError::new(
                        ErrorKind::Conversion,
                        format!("column {index}: text is not UTF-8"),
                        Some(Box::new(e)),
                    )
                })?)
            }
            rusqlite::types::ValueRef::Blob(b) => ValueRef::Blob(b),
        })
    }
}

/// What names a column of a row: its position, from 0.
pub trait ColumnIndex {
    /// The column's position.
    fn index(&self) -> usize;
}

impl ColumnIndex for usize {
    fn index(&self) -> usize {
        *self
    }
}

/// A value as stored, borrowed from a row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (booleans are stored as 0 and 1).
    Integer(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
}

impl<'a> ValueRef<'a> {
    /// The text, or an error naming what the value is instead.
    pub fn as_str(&self) -> Result<&'a str> {
        match self {
            ValueRef::Text(t) => Ok(t),
            other => Err(DatabaseError::new(
                ErrorKind::Conversion,
                format!("expected text, found {}", other.kind()),
                None,
            )
            .into()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ValueRef::Null => "NULL",
            ValueRef::Integer(_) => "an integer",
            ValueRef::Real(_) => "a real",
            ValueRef::Text(_) => "text",
            ValueRef::Blob(_) => "a blob",
        }
    }
}

/// An owned value, for parameter lists built at run time.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_owned())
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Integer(i)
    }
}

/// What a parameter binds: a borrowed or an owned value.
#[derive(Clone, Debug)]
pub enum ToSqlOutput<'a> {
    /// Borrowed from the parameter.
    Borrowed(ValueRef<'a>),
    /// Made for the binding.
    Owned(Value),
}

/// A type that binds to a statement's parameter.
pub trait ToSql {
    /// The value to bind.
    fn to_sql(&self) -> Result<ToSqlOutput<'_>>;
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_sql(&self) -> Result<ToSqlOutput<'_>> {
        (**self).to_sql()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_sql(&self) -> Result<ToSqlOutput<'_>> {
        match self {
            Some(v) => v.to_sql(),
            None => Ok(ToSqlOutput::Borrowed(ValueRef::Null)),
        }
    }
}

impl ToSql for str {
    fn to_sql(&self) -> Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self)))
    }
}

impl ToSql for String {
    fn to_sql(&self) -> Result<ToSqlOutput<'_>> {
        self.as_str().to_sql()
    }
}

impl ToSql for Cow<'_, str> {
    fn to_sql(&self) -> Result<ToSqlOutput<'_>> {
        self.as_ref().to_sql()
    }
}

impl ToSql for [u8] {
    fn to_sql(&self) -> Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Blob(self)))
    }
}

impl ToSql for Vec<u8> {
    fn to_sql(&self) -> Result<ToSqlOutput<'_>> {
        self.as_slice().to_sql()
    }
}

impl<const N: usize> ToSql for [u8; N] {
    fn to_sql(&self) -> Result<ToSqlOutput<'_>> {
        self.as_slice().to_sql()
    }
}

impl ToSql for bool {
    fn to_sql(&self) -> Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*self))))
    }
}

impl ToSql for f64 {
    fn to_sql(&self) -> Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Real(*self)))
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(t) => ValueRef::Text(t),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl ToSql for chrono::NaiveDate {
    fn to_sql(&self) -> Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Owned(Value::Text(
            self.format("%Y-%m-%d").to_string(),
        )))
    }
}

macro_rules! integer_to_sql {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> Result<ToSqlOutput<'_>> {
                let i = i64::try_from(*self).map_err(|_| {
                    DatabaseError::new(
                        ErrorKind::Conversion,
                        format!("{self} does not fit a 64-bit integer"),
                        None,
                    )
                })?;
                Ok(ToSqlOutput::Borrowed(ValueRef::Integer(i)))
            }
        }
    )*};
}

integer_to_sql!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

/// A type a column's value converts to.
pub trait FromSql: Sized {
    /// The value converted, or why not.
    fn from_sql(value: ValueRef<'_>) -> std::result::Result<Self, String>;
}

fn mismatch<T>(expected: &str, value: ValueRef<'_>) -> std::result::Result<T, String> {
    Err(format!("expected {expected}, found {}", value.kind()))
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Null => Ok(None),
            other => T::from_sql(other).map(Some),
        }
    }
}

impl FromSql for String {
    fn from_sql(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Text(t) => Ok(t.to_owned()),
            other => mismatch("text", other),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_sql(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            other => mismatch("a blob", other),
        }
    }
}

impl FromSql for bool {
    fn from_sql(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Integer(i) => Ok(i != 0),
            other => mismatch("a boolean", other),
        }
    }
}

impl FromSql for f64 {
    fn from_sql(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Real(r) => Ok(r),
            ValueRef::Integer(i) => Ok(i as f64),
            other => mismatch("a number", other),
        }
    }
}

impl FromSql for chrono::NaiveDate {
    fn from_sql(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Text(t) => t.parse().map_err(|e| format!("date {t:?}: {e}")),
            other => mismatch("a date", other),
        }
    }
}

macro_rules! integer_from_sql {
    ($($t:ty),*) => {$(
        impl FromSql for $t {
            fn from_sql(value: ValueRef<'_>) -> std::result::Result<Self, String> {
                match value {
                    ValueRef::Integer(i) => <$t>::try_from(i)
                        .map_err(|_| format!("{i} is out of range for {}", stringify!($t))),
                    other => mismatch("an integer", other),
                }
            }
        }
    )*};
}

integer_from_sql!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

/// A statement's parameters: `()` or `[]` for none, an array of values of one type, a slice or
/// vector of [`Value`]s, or [`params!`](crate::params)'s list of mixed ones.
pub trait Params {
    /// The values to bind, in order.
    fn values(&self) -> Result<Vec<ToSqlOutput<'_>>>;
}

impl Params for () {
    fn values(&self) -> Result<Vec<ToSqlOutput<'_>>> {
        Ok(Vec::new())
    }
}

impl Params for [&dyn ToSql; 0] {
    fn values(&self) -> Result<Vec<ToSqlOutput<'_>>> {
        Ok(Vec::new())
    }
}

impl<T: ToSql> Params for &[T] {
    fn values(&self) -> Result<Vec<ToSqlOutput<'_>>> {
        self.iter().map(|v| v.to_sql()).collect()
    }
}

impl<T: ToSql> Params for &Vec<T> {
    fn values(&self) -> Result<Vec<ToSqlOutput<'_>>> {
        self.iter().map(|v| v.to_sql()).collect()
    }
}

macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToSql> Params for [T; $n] {
            fn values(&self) -> Result<Vec<ToSqlOutput<'_>>> {
                self.iter().map(|v| v.to_sql()).collect()
            }
        }
    )*};
}

array_params!(1, 2, 3, 4, 5, 6, 7, 8);

/// A list of parameters of mixed types, as `params![a, b, c]`.
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::store::sql::ToSql]
    };
    ($($param:expr),+ $(,)?) => {
        &[$(&$param as &dyn $crate::store::sql::ToSql),+] as &[&dyn $crate::store::sql::ToSql]
    };
}

pub use crate::params;

impl rusqlite::ToSql for ToSqlOutput<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ValueRef as R;
        let value = match self {
            ToSqlOutput::Borrowed(v) => *v,
            ToSqlOutput::Owned(v) => match v {
                Value::Null => ValueRef::Null,
                Value::Integer(i) => ValueRef::Integer(*i),
                Value::Real(r) => ValueRef::Real(*r),
                Value::Text(t) => ValueRef::Text(t),
                Value::Blob(b) => ValueRef::Blob(b),
            },
        };
        Ok(rusqlite::types::ToSqlOutput::Borrowed(match value {
            ValueRef::Null => R::Null,
            ValueRef::Integer(i) => R::Integer(i),
            ValueRef::Real(r) => R::Real(r),
            ValueRef::Text(t) => R::Text(t.as_bytes()),
            ValueRef::Blob(b) => R::Blob(b),
        }))
    }
}

/// Makes a query's "no row" into `None`.
pub trait OptionalExtension<T> {
    /// `Ok(None)` for [`ErrorKind::NoRows`], the result otherwise.
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::Database(e)) if e.kind == ErrorKind::NoRows => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// What kind of failure a [`DatabaseError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A query expected a row and found none.
    NoRows,
    /// A stored value did not convert to the type asked for, or a parameter to SQL.
    Conversion,
    /// A constraint or trigger refused the write.
    Constraint,
    /// PostgreSQL ended a serializable transaction that conflicted with another (or a
    /// deadlock): running it again may succeed.
    Retry,
    /// Anything else the database reported.
    Other,
}

/// A failure of the database, with what the driver said.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DatabaseError {
    /// What kind of failure.
    pub kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl DatabaseError {
    /// The error with the statement that failed named in its message (which only logs see).
    pub(crate) fn in_statement(mut self, sql: &str) -> DatabaseError {
        let sql: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        self.message = format!("{} (in: {sql})", self.message);
        self
    }

    pub(crate) fn new(
        kind: ErrorKind,
        message: String,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> DatabaseError {
        DatabaseError {
            kind,
            message,
            source,
        }
    }

    fn no_rows() -> DatabaseError {
        DatabaseError::new(ErrorKind::NoRows, "query returned no rows".into(), None)
    }
}

impl From<rusqlite::Error> for DatabaseError {
    fn from(e: rusqlite::Error) -> DatabaseError {
        let kind = match &e {
            rusqlite::Error::QueryReturnedNoRows => ErrorKind::NoRows,
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                ErrorKind::Constraint
            }
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..) => ErrorKind::Conversion,
            _ => ErrorKind::Other,
        };
        DatabaseError::new(kind, e.to_string(), Some(Box::new(e)))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Database(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to each backend the tests can reach, with table `t` made afresh: SQLite in
    /// memory always, and PostgreSQL when `SUIJI_TEST_DATABASE` names one (its own schema per
    /// test, so that tests run side by side).
    fn conns(test: &str) -> Vec<Conn> {
        let sqlite = Conn::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        sqlite
            .execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, born TEXT,
                                 n INTEGER, data BLOB, UNIQUE (name))",
            )
            .unwrap();
        let mut conns = vec![sqlite];
        if let Ok(url) = std::env::var("SUIJI_TEST_DATABASE")
            && url.starts_with("postgres")
        {
            let pg = Conn::postgres(&url).unwrap();
            pg.execute_batch(&format!(
                "DROP SCHEMA IF EXISTS sql_{test} CASCADE; CREATE SCHEMA sql_{test};
                 SET search_path TO sql_{test};
                 CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                                 name TEXT NOT NULL, born TEXT, n BIGINT, data BYTEA,
                                 UNIQUE (name));"
            ))
            .unwrap();
            conns.push(pg);
        }
        conns
    }

    #[test]
    fn values_of_each_type_go_in_and_come_back() {
        for conn in conns("values") {
            let born = chrono::NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
            let n: u32 = 7;
            let id: i64 = conn
                .query_row(
                    "INSERT INTO t (name, born, n, data) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                    params!["甲", born, n, vec![0u8, 255]],
                    |r| r.get(0),
                )
                .unwrap();
            let row: (String, chrono::NaiveDate, u32, Vec<u8>, bool, bool) = conn
                .query_row(
                    "SELECT name, born, n, data, n > 1, EXISTS (SELECT 1 FROM t WHERE id = ?1)
                     FROM t",
                    [id],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    },
                )
                .unwrap();
            assert_eq!(row, ("甲".into(), born, 7, vec![0, 255], true, true));
            let none: Option<i64> = conn.query_row("SELECT NULL", [], |r| r.get(0)).unwrap();
            assert_eq!(none, None);
        }
    }

    #[test]
    fn a_missing_row_is_none_and_a_wrong_type_is_an_error() {
        for conn in conns("missing") {
            let missing = conn
                .query_row("SELECT id FROM t WHERE name = ?1", ["乙"], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()
                .unwrap();
            assert_eq!(missing, None);
            let wrong = conn.query_row("SELECT 'x'", [], |r| r.get::<_, i64>(0));
            assert!(matches!(
                wrong,
                Err(Error::Database(DatabaseError {
                    kind: ErrorKind::Conversion,
                    ..
                }))
            ));
            conn.execute("INSERT INTO t (name) VALUES (?1)", ["甲"])
                .unwrap();
            let twice = conn.execute("INSERT INTO t (name) VALUES (?1)", ["甲"]);
            assert!(matches!(
                twice,
                Err(Error::Database(DatabaseError {
                    kind: ErrorKind::Constraint,
                    ..
                }))
            ));
            let ignored = conn
                .execute(
                    "INSERT INTO t (name) VALUES (?1) ON CONFLICT DO NOTHING",
                    ["甲"],
                )
                .unwrap();
            assert_eq!(ignored, 0);
        }
    }

    #[test]
    fn a_dropped_write_rolls_back_and_a_committed_one_stays() {
        for conn in conns("rollback") {
            {
                let tx = conn.begin_write().unwrap();
                tx.execute("INSERT INTO t (name) VALUES ('dropped')", ())
                    .unwrap();
            }
            let tx = conn.begin_write().unwrap();
            tx.execute("INSERT INTO t (name) VALUES ('kept')", ())
                .unwrap();
            tx.commit().unwrap();
            {
                let snapshot = conn.snapshot().unwrap();
                let n: i64 = snapshot
                    .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                    .unwrap();
                assert_eq!(n, 1);
            }
            let names = conn
                .prepare("SELECT name FROM t ORDER BY id")
                .unwrap()
                .query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .collect::<Result<Vec<_>>>()
                .unwrap();
            assert_eq!(names, ["kept"]);
        }
    }

    #[test]
    fn an_integer_too_large_for_sql_is_refused() {
        for conn in conns("huge") {
            let huge = u64::MAX;
            let refused = conn.execute("INSERT INTO t (name, n) VALUES ('x', ?1)", [huge]);
            assert!(matches!(
                refused,
                Err(Error::Database(DatabaseError {
                    kind: ErrorKind::Conversion,
                    ..
                }))
            ));
        }
    }

    #[test]
    fn the_tests_reach_postgres_when_asked_to() {
        let asked = std::env::var("SUIJI_TEST_DATABASE").is_ok_and(|u| u.starts_with("postgres"));
        let reached = conns("reach").iter().filter(|c| c.is_postgres()).count();
        assert_eq!(reached, usize::from(asked));
    }
}
