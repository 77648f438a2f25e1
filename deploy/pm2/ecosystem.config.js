// PM2 apps of crud-master. Each service reads its configuration from the repository's .env.
const path = require("path");

const root = path.resolve(__dirname, "../..");

const service = (name, dir) => ({
  name,
  cwd: path.join(root, "services", dir),
  script: "server.py",
  interpreter: path.join(root, ".venv/bin/python"),
  autorestart: true,
  exp_backoff_restart_delay: 200,
  kill_timeout: 10000, // time for a graceful stop: billing finishes its batch, then acks
  env: { PYTHONUNBUFFERED: "1" },
});

module.exports = {
  apps: [
    service("inventory_app", "inventory"),
    service("billing_app", "billing"),
    service("api_gateway", "gateway"),
  ],
};
