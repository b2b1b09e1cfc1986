-- `kubectl model resume`: spec changes roll out again.
obj.spec.paused = false
return obj
