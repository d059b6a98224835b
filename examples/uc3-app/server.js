// A small Express app: "/" says hello, anything else is Express's own 404.
const express = require("express");

const app = express();
app.get("/", (req, res) => {
  res.type("text/plain").send("Hello from minicon uc3\n");
});

if (require.main === module) {
  const port = Number(process.env.PORT || 3000);
  app.listen(port, "127.0.0.1", () => console.log(`listening on ${port}`));
}
module.exports = app;
