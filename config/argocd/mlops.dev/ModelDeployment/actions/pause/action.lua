-- `kubectl model pause`: holds the running revision; spec changes wait.
-- Under GitOps, commit `paused: true` too, or the next sync resumes it.
obj.spec.paused = true
return obj
