// Serves "/" and a missing page once each on a free port, prints both statuses, exits.
const http = require("http");
const app = require("./server.js");

function get(port, path) {
  return new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve([res.statusCode, body]));
    }).on("error", reject);
  });
}

const server = app.listen(0, "127.0.0.1", async () => {
  const port = server.address().port;
  const [okStatus, okBody] = await get(port, "/");
  const [missingStatus] = await get(port, "/nope");
  console.log(okStatus, okBody.trim(), missingStatus);
  server.close();
});
