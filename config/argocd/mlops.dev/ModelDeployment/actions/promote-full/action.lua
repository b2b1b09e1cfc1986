-- `kubectl model promote --full`: skips every remaining step; the canary is
-- promoted once its analysis passes.
local c = obj.status.canary
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["mlops.dev/promote"] =
  tostring(c.revision) .. "/" .. tostring(c.startedAt or 0) .. "/full"
return obj
