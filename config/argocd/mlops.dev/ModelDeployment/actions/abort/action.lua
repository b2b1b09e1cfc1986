-- `kubectl model abort`: rolls the running canary back (RolledBack, reason
-- Aborted); the stable revision takes all traffic.
local c = obj.status.canary
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["mlops.dev/abort"] = tostring(c.revision) .. "/" .. tostring(c.startedAt or 0)
return obj
