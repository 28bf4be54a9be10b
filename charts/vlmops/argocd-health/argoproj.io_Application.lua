-- Argo CD health for argoproj.io/Application (resource.customizations.health.argoproj.io_Application).
-- Argo CD (since 1.8) does not assess the health of an Application inside another one, so the sync waves
-- of an app-of-apps (examples/gitops/argocd/root.yaml) would not wait for a child: this gives the parent
-- the child's own health, and Healthy only once the child is also Synced.
local hs = { status = "Progressing", message = "Waiting for the Application's first sync" }
if obj.status == nil or obj.status.health == nil or obj.status.health.status == nil then
  return hs
end
local health = obj.status.health
local message = health.message or ""
if health.status == "Degraded" or health.status == "Suspended" then
  hs.status = health.status
  hs.message = message
  return hs
end
if health.status == "Healthy" then
  local sync = nil
  if obj.status.sync ~= nil then
    sync = obj.status.sync.status
  end
  if sync == "Synced" then
    hs.status = "Healthy"
    hs.message = message
    return hs
  end
  hs.message = "Healthy but not yet Synced (" .. tostring(sync) .. ")"
  return hs
end
-- Progressing, Missing (nothing applied yet) or Unknown: the next wave waits.
hs.message = health.status .. (message ~= "" and (": " .. message) or "")
return hs
