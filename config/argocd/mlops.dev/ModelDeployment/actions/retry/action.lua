-- `kubectl model retry`: a new value of mlops.dev/retry (the time, in Unix
-- seconds) tries a failed revision again.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["mlops.dev/retry"] = tostring(os.time())
return obj
