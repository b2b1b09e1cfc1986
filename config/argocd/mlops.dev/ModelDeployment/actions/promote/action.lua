-- `kubectl model promote`: ends the canary's current step. The value names
-- the canary (revision and start) and the step, so it cannot promote a
-- later canary; the operator reads startedAt as status shows it.
local c = obj.status.canary
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["mlops.dev/promote"] =
  tostring(c.revision) .. "/" .. tostring(c.startedAt or 0) .. "/" .. tostring(c.stepIndex or 0)
return obj
