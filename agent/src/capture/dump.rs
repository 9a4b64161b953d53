//! `--dump-events`: one JSON line of metadata per kernel event, for diagnosing capture. It
//! never writes payload bytes (they may hold secrets), only their length.

use std::io::Write;

use serde_json::json;

use super::event::CaptureEvent;

pub struct EventDump<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> EventDump<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    pub fn write(&mut self, event: &CaptureEvent) -> std::io::Result<()> {
        let task = event.task();
        let mut value = json!({
            "ts_ns": task.ts_ns,
            "process.pid": task.tgid,
            "thread.id": task.pid,
            "comm": task.comm,
        });
        let extra = match event {
            CaptureEvent::Data(d) => json!({
                "kind": "data",
                "fd": d.fd,
                "op": d.op,
                "direction": d.direction.name(),
                "total_len": d.total_len,
                "captured_len": d.payload.len(),
                "local": d.sockets.local.to_string(),
                "remote": d.sockets.remote.to_string(),
                "after_loss": d.after_loss,
                "tls": d.tls.map(|l| l.name()),
            }),
            CaptureEvent::Conn {
                fd, sockets, kind, ..
            } => json!({
                "kind": kind.name(),
                "fd": fd,
                "local": sockets.local.to_string(),
                "remote": sockets.remote.to_string(),
            }),
            CaptureEvent::Exec { filename, .. } => json!({"kind": "exec", "filename": filename}),
            CaptureEvent::Exit { .. } => json!({"kind": "exit"}),
            CaptureEvent::ExecMapping { .. } => json!({"kind": "exec_mapping"}),
            CaptureEvent::CgroupCreated { id, path, .. } => {
                json!({"kind": "cgroup_created", "cgroup.id": id, "cgroup.path": path})
            }
        };
        if let (Some(v), Some(e)) = (value.as_object_mut(), extra.as_object()) {
            v.extend(e.clone());
        }
        serde_json::to_writer(&mut self.out, &value)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
