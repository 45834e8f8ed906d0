//! The [`Store`](crate::Store) implementation both SQL backends share. The SQL and the rows
//! are the same for SQLite and Postgres, only the pool type differs, so one macro body is
//! expanded for each backend instead of being written twice.
//!
//! Listings page by keyset: `(time, request_id)` compared as a row value against the cursor.
//! On SQLite times are fixed-width text (see [`timestamp`](crate::timestamp)), so comparing
//! the text compares the times.

macro_rules! sql_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn ping(&self) -> $crate::Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn put_code(
                &self,
                sha: &nimbus_core::CodeSha256,
                zip: bytes::Bytes,
            ) -> $crate::Result<()> {
                // No zip comes near i64::MAX bytes; the column is informational.
                let size = i64::try_from(zip.len()).unwrap_or(i64::MAX);
                sqlx::query(
                    "INSERT INTO function_code (sha256, zip, size) VALUES ($1, $2, $3) \
                     ON CONFLICT (sha256) DO NOTHING",
                )
                .bind(sha.to_hex())
                .bind(zip.as_ref())
                .bind(size)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_code(
                &self,
                sha: &nimbus_core::CodeSha256,
            ) -> $crate::Result<Option<bytes::Bytes>> {
                let zip: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT zip FROM function_code WHERE sha256 = $1")
                        .bind(sha.to_hex())
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(zip.map(bytes::Bytes::from))
            }

            async fn create_function(
                &self,
                function: &nimbus_core::FunctionConfig,
            ) -> $crate::Result<()> {
                let row = $crate::rows::FunctionRow::from_config(function)?;
                let inserted = bind_function(sqlx::query($crate::rows::INSERT_FUNCTION), row)
                    .execute(&self.pool)
                    .await;
                match inserted {
                    Ok(_) => Ok(()),
                    Err(e) if $crate::error::is_unique_violation(&e) => {
                        Err($crate::Error::Conflict(format!(
                            "Function already exist: {}",
                            function.name
                        )))
                    }
                    Err(e) => Err(e.into()),
                }
            }

            async fn get_function(
                &self,
                name: &nimbus_core::FunctionName,
            ) -> $crate::Result<Option<nimbus_core::FunctionConfig>> {
                let sql = format!(
                    "SELECT {} FROM functions WHERE name = $1",
                    $crate::rows::FUNCTION_COLUMNS
                );
                let row: Option<$crate::rows::FunctionRow> = sqlx::query_as(&sql)
                    .bind(name.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map($crate::rows::FunctionRow::into_config).transpose()
            }

            async fn list_functions(
                &self,
                after: Option<&nimbus_core::FunctionName>,
                limit: usize,
            ) -> $crate::Result<Vec<nimbus_core::FunctionConfig>> {
                let sql = format!(
                    "SELECT {} FROM functions WHERE name > $1 ORDER BY name LIMIT $2",
                    $crate::rows::FUNCTION_COLUMNS
                );
                let rows: Vec<$crate::rows::FunctionRow> = sqlx::query_as(&sql)
                    .bind(after.map_or("", |name| name.as_str()))
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map($crate::rows::FunctionRow::into_config)
                    .collect()
            }

            async fn update_function(
                &self,
                function: &nimbus_core::FunctionConfig,
                expected_revision: &str,
            ) -> $crate::Result<()> {
                let row = $crate::rows::FunctionRow::from_config(function)?;
                let updated = bind_function(sqlx::query($crate::rows::UPDATE_FUNCTION), row)
                    .bind(expected_revision)
                    .execute(&self.pool)
                    .await?;
                if updated.rows_affected() == 1 {
                    return Ok(());
                }
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT revision_id FROM functions WHERE name = $1")
                        .bind(function.name.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                Err(match exists {
                    Some(_) => $crate::Error::RevisionMismatch(format!(
                        "The Revision Id provided does not match the latest Revision Id. \
                         Call the GetFunction/GetAlias API to retrieve the latest Revision Id \
                         of {}",
                        function.name
                    )),
                    None => $crate::Error::NotFound(format!(
                        "Function not found: {}",
                        function.name
                    )),
                })
            }

            async fn delete_function(
                &self,
                name: &nimbus_core::FunctionName,
            ) -> $crate::Result<bool> {
                let deleted = sqlx::query("DELETE FROM functions WHERE name = $1")
                    .bind(name.as_str())
                    .execute(&self.pool)
                    .await?;
                Ok(deleted.rows_affected() > 0)
            }

            async fn put_invocations(
                &self,
                records: &[nimbus_core::InvocationRecord],
            ) -> $crate::Result<()> {
                // Bind parameters per statement are capped (SQLite: 32766, Postgres: 65535);
                // a record takes 14.
                const RECORDS_PER_STATEMENT: usize = 1000;
                let records = $crate::rows::kept_per_request(records);
                if records.is_empty() {
                    return Ok(());
                }
                let mut transaction = self.pool.begin().await?;
                for chunk in records.chunks(RECORDS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(format!(
                        "INSERT INTO invocations ({}) ",
                        $crate::rows::INVOCATION_COLUMNS
                    ));
                    insert.push_values(chunk, |mut values, record| {
                        let row = $crate::rows::InvocationRow::from_record(record);
                        values
                            .push_bind(row.request_id)
                            .push_bind(row.function_name)
                            .push_bind(row.function_version)
                            .push_bind(row.invocation_type)
                            .push_bind(row.status)
                            .push_bind(row.attempts)
                            .push_bind(row.created_at)
                            .push_bind(row.started_at)
                            .push_bind(row.finished_at)
                            .push_bind(row.duration_ms)
                            .push_bind(row.error_type)
                            .push_bind(row.error_message)
                            .push_bind(row.attempt_history)
                            .push_bind(row.redrive_of);
                    });
                    insert.push($crate::rows::UPSERT_INVOCATION_SUFFIX);
                    insert.build().execute(&mut *transaction).await?;
                }
                transaction.commit().await?;
                Ok(())
            }

            async fn get_invocation(
                &self,
                request_id: &nimbus_core::RequestId,
            ) -> $crate::Result<Option<nimbus_core::InvocationRecord>> {
                let sql = format!(
                    "SELECT {} FROM invocations WHERE request_id = $1",
                    $crate::rows::INVOCATION_COLUMNS
                );
                let row: Option<$crate::rows::InvocationRow> = sqlx::query_as(&sql)
                    .bind(request_id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map($crate::rows::InvocationRow::into_record).transpose()
            }

            async fn list_invocations(
                &self,
                filter: &nimbus_core::InvocationFilter,
                after: Option<&nimbus_core::Cursor>,
                limit: usize,
            ) -> $crate::Result<Vec<nimbus_core::InvocationRecord>> {
                let mut query = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM invocations WHERE TRUE",
                    $crate::rows::INVOCATION_COLUMNS
                ));
                if let Some(name) = &filter.function_name {
                    query.push(" AND function_name = ").push_bind(name.to_string());
                }
                if let Some(status) = filter.status {
                    query.push(" AND status = ").push_bind(status.as_str());
                }
                if let Some(cursor) = after {
                    query
                        .push(" AND (created_at, request_id) < (")
                        .push_bind($crate::timestamp::Timestamp::new(cursor.at))
                        .push(", ")
                        .push_bind(cursor.request_id.as_uuid())
                        .push(")");
                }
                query
                    .push(" ORDER BY created_at DESC, request_id DESC LIMIT ")
                    .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
                let rows: Vec<$crate::rows::InvocationRow> =
                    query.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map($crate::rows::InvocationRow::into_record)
                    .collect()
            }

            async fn put_event_invoke_config(
                &self,
                name: &nimbus_core::FunctionName,
                qualifier: &str,
                config: &nimbus_core::EventInvokeConfig,
            ) -> $crate::Result<()> {
                let row = $crate::rows::EventInvokeConfigRow::from_config(qualifier, config);
                let stored = sqlx::query($crate::rows::UPSERT_EVENT_INVOKE_CONFIG)
                    .bind(name.as_str())
                    .bind(row.qualifier)
                    .bind(row.maximum_retry_attempts)
                    .bind(row.maximum_event_age_secs)
                    .bind(row.on_success)
                    .bind(row.on_failure)
                    .bind(row.last_modified)
                    .execute(&self.pool)
                    .await;
                match stored {
                    Ok(_) => Ok(()),
                    Err(e) if $crate::error::is_foreign_key_violation(&e) => Err(
                        $crate::Error::NotFound(format!("Function not found: {name}")),
                    ),
                    Err(e) => Err(e.into()),
                }
            }

            async fn get_event_invoke_config(
                &self,
                name: &nimbus_core::FunctionName,
                qualifier: &str,
            ) -> $crate::Result<Option<nimbus_core::EventInvokeConfig>> {
                let sql = format!(
                    "SELECT {} FROM event_invoke_configs \
                     WHERE function_name = $1 AND qualifier = $2",
                    $crate::rows::EVENT_INVOKE_CONFIG_COLUMNS
                );
                let row: Option<$crate::rows::EventInvokeConfigRow> = sqlx::query_as(&sql)
                    .bind(name.as_str())
                    .bind(qualifier)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| row.into_config(name).map(|(_, config)| config))
                    .transpose()
            }

            async fn list_event_invoke_configs(
                &self,
                name: &nimbus_core::FunctionName,
            ) -> $crate::Result<Vec<(String, nimbus_core::EventInvokeConfig)>> {
                let sql = format!(
                    "SELECT {} FROM event_invoke_configs WHERE function_name = $1 \
                     ORDER BY qualifier",
                    $crate::rows::EVENT_INVOKE_CONFIG_COLUMNS
                );
                let rows: Vec<$crate::rows::EventInvokeConfigRow> = sqlx::query_as(&sql)
                    .bind(name.as_str())
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(|row| row.into_config(name)).collect()
            }

            async fn delete_event_invoke_config(
                &self,
                name: &nimbus_core::FunctionName,
                qualifier: &str,
            ) -> $crate::Result<bool> {
                let deleted = sqlx::query(
                    "DELETE FROM event_invoke_configs WHERE function_name = $1 AND qualifier = $2",
                )
                .bind(name.as_str())
                .bind(qualifier)
                .execute(&self.pool)
                .await?;
                Ok(deleted.rows_affected() > 0)
            }

            async fn put_dead_letter(
                &self,
                letter: &nimbus_core::DeadLetter,
            ) -> $crate::Result<bool> {
                let row = $crate::rows::DeadLetterRow::from_letter(letter);
                let inserted = sqlx::query($crate::rows::INSERT_DEAD_LETTER)
                    .bind(row.request_id)
                    .bind(row.function_name)
                    .bind(row.qualifier)
                    .bind(row.payload)
                    .bind(row.attempts)
                    .bind(row.reason)
                    .bind(row.enqueued_at)
                    .bind(row.dead_lettered_at)
                    .bind(row.redriven_at)
                    .bind(row.redrive_request_id)
                    .execute(&self.pool)
                    .await?;
                Ok(inserted.rows_affected() > 0)
            }

            async fn get_dead_letter(
                &self,
                request_id: &nimbus_core::RequestId,
            ) -> $crate::Result<Option<nimbus_core::DeadLetter>> {
                let sql = format!(
                    "SELECT {} FROM dead_letters WHERE request_id = $1",
                    $crate::rows::DEAD_LETTER_COLUMNS
                );
                let row: Option<$crate::rows::DeadLetterRow> = sqlx::query_as(&sql)
                    .bind(request_id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map($crate::rows::DeadLetterRow::into_letter).transpose()
            }

            async fn list_dead_letters(
                &self,
                filter: &nimbus_core::DeadLetterFilter,
                after: Option<&nimbus_core::Cursor>,
                limit: usize,
            ) -> $crate::Result<Vec<nimbus_core::DeadLetter>> {
                let mut query = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM dead_letters WHERE TRUE",
                    $crate::rows::DEAD_LETTER_COLUMNS
                ));
                push_dead_letter_filter(&mut query, filter);
                if let Some(cursor) = after {
                    query
                        .push(" AND (dead_lettered_at, request_id) > (")
                        .push_bind($crate::timestamp::Timestamp::new(cursor.at))
                        .push(", ")
                        .push_bind(cursor.request_id.as_uuid())
                        .push(")");
                }
                query
                    .push(" ORDER BY dead_lettered_at, request_id LIMIT ")
                    .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
                let rows: Vec<$crate::rows::DeadLetterRow> =
                    query.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map($crate::rows::DeadLetterRow::into_letter)
                    .collect()
            }

            async fn mark_redriven(
                &self,
                request_id: &nimbus_core::RequestId,
                mark: &nimbus_core::RedriveMark,
            ) -> $crate::Result<bool> {
                let marked = sqlx::query(
                    "UPDATE dead_letters SET redriven_at = $2, redrive_request_id = $3 \
                     WHERE request_id = $1 AND redrive_request_id IS NULL",
                )
                .bind(request_id.as_uuid())
                .bind($crate::timestamp::Timestamp::new(mark.at))
                .bind(mark.request_id.as_uuid())
                .execute(&self.pool)
                .await?;
                Ok(marked.rows_affected() > 0)
            }

            async fn unmark_redriven(
                &self,
                request_id: &nimbus_core::RequestId,
                mark: &nimbus_core::RedriveMark,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "UPDATE dead_letters SET redriven_at = NULL, redrive_request_id = NULL \
                     WHERE request_id = $1 AND redrive_request_id = $2",
                )
                .bind(request_id.as_uuid())
                .bind(mark.request_id.as_uuid())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn delete_dead_letter(
                &self,
                request_id: &nimbus_core::RequestId,
            ) -> $crate::Result<bool> {
                let deleted = sqlx::query("DELETE FROM dead_letters WHERE request_id = $1")
                    .bind(request_id.as_uuid())
                    .execute(&self.pool)
                    .await?;
                Ok(deleted.rows_affected() > 0)
            }

            async fn purge_dead_letters(
                &self,
                filter: &nimbus_core::DeadLetterFilter,
            ) -> $crate::Result<u64> {
                let mut query =
                    sqlx::QueryBuilder::<$db>::new("DELETE FROM dead_letters WHERE TRUE");
                push_dead_letter_filter(&mut query, filter);
                let purged = query.build().execute(&self.pool).await?;
                Ok(purged.rows_affected())
            }
        }

        /// Appends ` AND ...` conditions selecting the letters `filter` names.
        fn push_dead_letter_filter(
            query: &mut sqlx::QueryBuilder<'_, $db>,
            filter: &nimbus_core::DeadLetterFilter,
        ) {
            if let Some(name) = &filter.function_name {
                query.push(" AND function_name = ").push_bind(name.to_string());
            }
            if let Some(since) = filter.since {
                query
                    .push(" AND dead_lettered_at >= ")
                    .push_bind($crate::timestamp::Timestamp::new(since));
            }
            if let Some(until) = filter.until {
                query
                    .push(" AND dead_lettered_at < ")
                    .push_bind($crate::timestamp::Timestamp::new(until));
            }
        }

        fn bind_function<'q>(
            query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            row: $crate::rows::FunctionRow,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            query
                .bind(row.name)
                .bind(row.runtime)
                .bind(row.handler)
                .bind(row.role)
                .bind(row.description)
                .bind(row.timeout_secs)
                .bind(row.memory_mb)
                .bind(row.environment)
                .bind(row.reserved_concurrency)
                .bind(row.code_sha256)
                .bind(row.code_size)
                .bind(row.version)
                .bind(row.revision_id)
                .bind(row.last_modified)
        }
    };
}

pub(crate) use sql_store;
