//! The PostgreSQL side of [`super::sql`]: a client with its statement cache, the rewrite of
//! SQLite's `?N` placeholders into PostgreSQL's `$N`, and the conversions between the store's
//! values and PostgreSQL's types.
//!
//! The store reads every integer and boolean as a 64-bit integer, so a PostgreSQL `boolean`
//! (what `EXISTS` and comparisons return) reads as 0 or 1, and a parameter binds to whatever
//! type PostgreSQL inferred for its place when the value converts without loss.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::error::Error as StdError;

use postgres::types::{IsNull, ToSql as PgToSql, Type, to_sql_checked};

use super::sql::{DatabaseError, ErrorKind, ToSqlOutput, Value, ValueRef};

type BoxError = Box<dyn StdError + Sync + Send>;

/// One PostgreSQL connection with the statements prepared on it.
pub(crate) struct PgConn {
    /// Always `Some` until the connection is dropped (see the `Drop` impl).
    client: RefCell<Option<postgres::Client>>,
    statements: RefCell<HashMap<String, postgres::Statement>>,
    pub(crate) in_transaction: Cell<bool>,
}

impl PgConn {
    /// Connects to `url` (`postgres://user@host:port/db`), without TLS: the database is on the
    /// server's own network.
    pub(crate) fn connect(url: &str) -> Result<PgConn, DatabaseError> {
        let client = postgres::Client::connect(url, postgres::NoTls)?;
        Ok(PgConn {
            client: RefCell::new(Some(client)),
            statements: RefCell::new(HashMap::new()),
            in_transaction: Cell::new(false),
        })
    }

    /// The client, for one call.
    pub(crate) fn client(&self) -> RefMut<'_, postgres::Client> {
        RefMut::map(self.client.borrow_mut(), |c| {
            c.as_mut()
                .expect("the client is present until the connection drops")
        })
    }

    /// Whether the connection's socket has closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.client.borrow().as_ref().is_none_or(|c| c.is_closed())
    }

    /// `sql` prepared, from the cache when `cached`.
    pub(crate) fn prepare(
        &self,
        sql: &str,
        cached: bool,
    ) -> Result<postgres::Statement, DatabaseError> {
        if cached && let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .client()
            .prepare(&placeholders(sql))
            .map_err(|e| DatabaseError::from(e).in_statement(sql))?;
        if cached {
            self.statements
                .borrow_mut()
                .insert(sql.to_owned(), statement.clone());
        }
        Ok(statement)
    }

    /// Runs `sql` (several statements, no parameters), keeping track of transactions begun and
    /// ended by it.
    pub(crate) fn batch(&self, sql: &str) -> Result<(), DatabaseError> {
        self.client().batch_execute(sql)?;
        let head = sql.trim_start().to_ascii_uppercase();
        if head.starts_with("BEGIN") {
            self.in_transaction.set(true);
        } else if head.starts_with("COMMIT") || head.starts_with("ROLLBACK") {
            self.in_transaction.set(false);
        }
        Ok(())
    }
}

impl Drop for PgConn {
    /// Closing the client blocks on the runtime it carries, which panics on a thread that drives
    /// async tasks (where the last handle to a pool may well be dropped); there the client is
    /// closed on a thread of its own.
    fn drop(&mut self) {
        let Some(client) = self.client.get_mut().take() else {
            return;
        };
        if crate::db::on_async_thread() {
            std::thread::spawn(move || drop(client));
        }
    }
}

/// `sql` with SQLite's placeholders (`?1`, or a bare `?` numbered by position) written as
/// PostgreSQL's (`$1`), leaving string literals, quoted identifiers and comments alone.
pub(crate) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut next = 1;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        // A doubled quote inside reopens at once: the next round sees it.
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    out.push_str(&next.to_string());
                    next += 1;
                } else {
                    out.push_str(&digits);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// A bound value, converted to the type PostgreSQL inferred for its parameter.
#[derive(Debug)]
pub(crate) struct Param<'a>(pub(crate) &'a ToSqlOutput<'a>);

impl PgToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        let value = match self.0 {
            ToSqlOutput::Borrowed(v) => *v,
            ToSqlOutput::Owned(v) => v.as_ref(),
        };
        match value {
            ValueRef::Null => Ok(IsNull::Yes),
            ValueRef::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(format!("an integer does not bind to {ty}").into()),
            },
            ValueRef::Real(r) => match *ty {
                Type::FLOAT8 => r.to_sql(ty, out),
                Type::FLOAT4 => (r as f32).to_sql(ty, out),
                _ => Err(format!("a real does not bind to {ty}").into()),
            },
            ValueRef::Text(t) => match *ty {
                Type::INT8 => t.parse::<i64>()?.to_sql(ty, out),
                _ => t.to_sql(ty, out),
            },
            ValueRef::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Which types a value binds to depends on the value: `to_sql` decides.
        true
    }

    to_sql_checked!();
}

impl Value {
    fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(t) => ValueRef::Text(t),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }
}

/// Column `index` of `row` as a store value.
pub(crate) fn column(row: &postgres::Row, index: usize) -> Result<ValueRef<'_>, DatabaseError> {
    let Some(col) = row.columns().get(index) else {
        return Err(DatabaseError::new(
            ErrorKind::Conversion,
            format!("no column {index}"),
            None,
        ));
    };
    let value = match *col.type_() {
        Type::INT8 => row.try_get::<_, Option<i64>>(index)?.map(ValueRef::Integer),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(index)?
            .map(|i| ValueRef::Integer(i.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(index)?
            .map(|i| ValueRef::Integer(i.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(index)?
            .map(|b| ValueRef::Integer(b.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(index)?.map(ValueRef::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(index)?
            .map(|r| ValueRef::Real(r.into())),
        Type::BYTEA => row.try_get::<_, Option<&[u8]>>(index)?.map(ValueRef::Blob),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            row.try_get::<_, Option<&str>>(index)?.map(ValueRef::Text)
        }
        ref other => {
            return Err(DatabaseError::new(
                ErrorKind::Conversion,
                format!(
                    "column {index} ({}) is {other}, which the store does not read: cast it",
                    col.name()
                ),
                None,
            ));
        }
    };
    Ok(value.unwrap_or(ValueRef::Null))
}

impl From<postgres::Error> for DatabaseError {
    fn from(e: postgres::Error) -> DatabaseError {
        use postgres::error::SqlState;
        let kind = match e.code() {
            Some(c)
                if *c == SqlState::UNIQUE_VIOLATION
                    || *c == SqlState::FOREIGN_KEY_VIOLATION
                    || *c == SqlState::CHECK_VIOLATION
                    || *c == SqlState::NOT_NULL_VIOLATION
                    || *c == SqlState::RAISE_EXCEPTION =>
            {
                ErrorKind::Constraint
            }
            Some(c)
                if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                ErrorKind::Retry
            }
            _ => ErrorKind::Other,
        };
        let message = match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        };
        DatabaseError::new(kind, message, Some(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_rewritten_outside_literals_identifiers_and_comments() {
        assert_eq!(
            placeholders(
                "SELECT a FROM t WHERE b = ?1 AND c = ?12 -- ?3\n AND d = '?4' AND \"?5\" = ?2"
            ),
            "SELECT a FROM t WHERE b = $1 AND c = $12 -- ?3\n AND d = '?4' AND \"?5\" = $2"
        );
        assert_eq!(
            placeholders("VALUES (?, ?, 'it''s ?')"),
            "VALUES ($1, $2, 'it''s ?')"
        );
    }
}
