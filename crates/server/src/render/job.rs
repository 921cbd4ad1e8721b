//! The `render` job: renders one execution. Its payload is `{"execution_id": "exe_…"}`.
//!
//! queued → rendering (`render.started`) → completed (`render.completed`, output stored) or
//! failed (`render.failed`, when the error is permanent or the last attempt failed; otherwise the
//! execution goes back to `queued` and the queue retries). Delivery is at least once, so the job
//! is idempotent: an execution that already finished is left as it is.

use super::{RenderError, RenderProvider, RenderRequest};
use crate::clock::Clock;
use crate::db::BeginWrite as _;
use crate::db::{json_object, Db};
use crate::events::types;
use crate::ids::RenderId;
use crate::queue::worker::{JobContext, JobHandler};
use crate::queue::{Job, JobFailure};
use crate::storage::BlobStore;
use crate::{emit_event, with_db};
use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::types::Json;
use std::sync::Arc;

pub const QUEUE: &str = "render";
pub const KIND: &str = "render";

pub struct RenderJob {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub blobs: Arc<dyn BlobStore>,
    pub provider: Arc<dyn RenderProvider>,
}

#[derive(sqlx::FromRow)]
struct Loaded {
    client_id: String,
    status: String,
    params: Json<Value>,
    template: Json<Value>,
}

fn db_failure(e: sqlx::Error) -> JobFailure {
    JobFailure::retryable("render.db", format!("database: {e}"))
}

impl RenderJob {
    async fn finish_failed(
        &self,
        execution: &str,
        render: &RenderId,
        error: &str,
    ) -> Result<(), JobFailure> {
        let now = self.clock.now();
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(db_failure)?;
            sqlx::query("UPDATE executions SET status = 'failed', error = $2, updated_at = $3 WHERE id = $1 AND status IN ('queued', 'rendering')")
                .bind(execution).bind(error).bind(now).execute(&mut *tx).await.map_err(db_failure)?;
            sqlx::query("UPDATE renders SET status = 'failed', error = $2, finished_at = $3 WHERE id = $1")
                .bind(render.as_str()).bind(error).bind(now).execute(&mut *tx).await.map_err(db_failure)?;
            emit_event!(&mut *tx, now, types::RENDER_FAILED, execution, json!({"execution_id": execution, "error": error})).map_err(db_failure)?;
            tx.commit().await.map_err(db_failure)?;
        });
        Ok(())
    }
}

#[async_trait]
impl JobHandler for RenderJob {
    async fn handle(&self, job: &Job, ctx: &JobContext) -> Result<Value, JobFailure> {
        let execution = job
            .payload
            .get("execution_id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                JobFailure::permanent("render.payload", "the payload has no execution_id")
            })?
            .to_owned();
        let loaded: Option<Loaded> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT e.client_id, e.status, e.params, m.template FROM executions e JOIN matrices m ON m.id = e.matrix_id WHERE e.id = $1")
                .bind(&execution)
                .fetch_optional(pool)
                .await
                .map_err(db_failure)?
        });
        let Some(loaded) = loaded else {
            return Err(JobFailure::permanent(
                "render.load",
                format!("execution {execution} does not exist"),
            ));
        };
        if matches!(loaded.status.as_str(), "completed" | "failed" | "cancelled") {
            return Ok(json!({"skipped": format!("execution is already {}", loaded.status)}));
        }
        let now = self.clock.now();
        let render = RenderId::new(now);
        // A render an earlier attempt started with this provider and never saw finish.
        let resume: Option<String> = with_db!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT provider_ref FROM renders WHERE execution_id = $1 AND provider = $2 AND status = 'rendering'
                 AND provider_ref IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .bind(&execution)
            .bind(self.provider.name())
            .fetch_optional(pool)
            .await
            .map_err(db_failure)?
        });
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(db_failure)?;
            sqlx::query("UPDATE executions SET status = 'rendering', progress = 0, error = NULL, updated_at = $2 WHERE id = $1")
                .bind(&execution).bind(now).execute(&mut *tx).await.map_err(db_failure)?;
            sqlx::query("INSERT INTO renders (id, execution_id, provider, status, created_at) VALUES ($1, $2, $3, 'rendering', $4)")
                .bind(render.as_str()).bind(&execution).bind(self.provider.name()).bind(now).execute(&mut *tx).await.map_err(db_failure)?;
            emit_event!(&mut *tx, now, types::RENDER_STARTED, &execution, json!({"execution_id": execution, "render_id": render, "provider": self.provider.name()})).map_err(db_failure)?;
            tx.commit().await.map_err(db_failure)?;
        });
        let _ = ctx.progress(10, Some("rendering")).await;
        let req = RenderRequest {
            execution_id: execution.clone(),
            client_id: loaded.client_id.clone(),
            template: json_object(loaded.template),
            params: json_object(loaded.params),
            resume,
            started: Some(Arc::new(NoteRef {
                db: self.db.clone(),
                render: render.clone(),
            })),
        };
        let rendered = tokio::select! {
            r = self.provider.render(&req) => r,
            () = ctx.cancel.cancelled() => Err(RenderError::Transient(
                "stopped: the attempt timed out or was cancelled".into(),
            )),
        };
        let rendered = match rendered {
            Ok(r) => r,
            Err(e) => {
                let last = matches!(e, RenderError::Invalid(_)) || job.attempts >= job.max_attempts;
                let message = e.to_string();
                if last {
                    self.finish_failed(&execution, &render, &message).await?;
                    return Err(JobFailure::permanent("render.provider", message));
                }
                let now = self.clock.now();
                with_db!(&self.db, pool => {
                    sqlx::query("UPDATE executions SET status = 'queued', error = $2, updated_at = $3 WHERE id = $1 AND status = 'rendering'")
                        .bind(&execution).bind(&message).bind(now).execute(pool).await.map_err(db_failure)?;
                });
                return Err(JobFailure::retryable("render.provider", message));
            }
        };
        let _ = ctx.progress(70, Some("storing the output")).await;
        let key = format!(
            "renders/{}/{execution}.{}",
            loaded.client_id, rendered.extension
        );
        let size = rendered.bytes.len();
        self.blobs
            .put(&key, rendered.bytes, rendered.content_type)
            .await
            .map_err(|e| JobFailure::retryable("render.store", e.to_string()))?;
        let now = self.clock.now();
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(db_failure)?;
            sqlx::query("UPDATE executions SET status = 'completed', progress = 100, output_key = $2, error = NULL, updated_at = $3 WHERE id = $1")
                .bind(&execution).bind(&key).bind(now).execute(&mut *tx).await.map_err(db_failure)?;
            sqlx::query("UPDATE renders SET status = 'completed', output_key = $2, finished_at = $3 WHERE id = $1")
                .bind(render.as_str()).bind(&key).bind(now).execute(&mut *tx).await.map_err(db_failure)?;
            emit_event!(&mut *tx, now, types::RENDER_COMPLETED, &execution, json!({"execution_id": execution, "output_key": key, "bytes": size})).map_err(db_failure)?;
            tx.commit().await.map_err(db_failure)?;
        });
        Ok(
            json!({"output_key": key, "bytes": size, "width": rendered.width, "height": rendered.height}),
        )
    }
}

/// Writes the provider's id of this attempt's render onto its `renders` row.
struct NoteRef {
    db: crate::db::Db,
    render: RenderId,
}

#[async_trait]
impl super::StartedRender for NoteRef {
    async fn record(&self, provider_ref: &str) -> Result<(), RenderError> {
        with_db!(&self.db, pool => {
            sqlx::query("UPDATE renders SET provider_ref = $2 WHERE id = $1")
                .bind(self.render.as_str())
                .bind(provider_ref)
                .execute(pool)
                .await
                .map_err(|e| RenderError::Transient(format!("database: {e}")))?;
        });
        Ok(())
    }
}

/// The render feature's event consumer: `execution.created` becomes a `render` job. The job's
/// unique key is the execution id, so a redelivered event finds the job already there.
pub struct RenderConsumer {
    pub queue: Arc<dyn crate::queue::JobQueue>,
}

impl RenderConsumer {
    pub const NAME: &'static str = "render";
}

#[async_trait]
impl crate::events::Consumer for RenderConsumer {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn event_types(&self) -> &[&'static str] {
        &[types::EXECUTION_CREATED]
    }

    async fn deliver(
        &self,
        d: &crate::events::Delivery<'_>,
    ) -> Result<(), crate::events::DeliveryError> {
        let Some(execution) = d.event.payload.get("execution_id").and_then(Value::as_str) else {
            return Err(crate::events::DeliveryError::permanent(
                "the event has no execution_id",
            ));
        };
        let job = crate::queue::NewJob {
            unique_key: Some(execution.to_owned()),
            correlation_id: Some(execution.to_owned()),
            ..self
                .queue
                .policy(QUEUE)
                .job(QUEUE, KIND, json!({"execution_id": execution}))
        };
        match self.queue.enqueue(job).await {
            Ok(_) => Ok(()),
            Err(e @ crate::queue::QueueError::Invalid(_)) => {
                Err(crate::events::DeliveryError::permanent(e.to_string()))
            }
            Err(e) => Err(crate::events::DeliveryError::retryable(format!(
                "enqueueing the render job: {e}"
            ))),
        }
    }
}
