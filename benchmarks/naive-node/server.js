// The handler idgate replaces, as PortOne's own Node example writes it (express and axios): a new
// access token for every request, then the certification, then an age check. No database.
//   node benchmarks/naive-node/server.js PORT PORTONE_URL
const express = require("express");
const axios = require("axios");

const [port, portone] = process.argv.slice(2);
const app = express();
app.use(express.json());

app.post("/certifications", async (req, res) => {
  try {
    const { imp_uid } = req.body;
    const getToken = await axios({
      url: `${portone}/users/getToken`,
      method: "post",
      headers: { "Content-Type": "application/json" },
      data: { imp_key: "sandbox_imp_key", imp_secret: "sandbox_imp_secret" },
    });
    const { access_token } = getToken.data.response;
    const getCertifications = await axios({
      url: `${portone}/certifications/${imp_uid}`,
      method: "get",
      headers: { Authorization: access_token },
    });
    const certification = getCertifications.data.response;
    const birthday = new Date(certification.birthday);
    const today = new Date();
    let age = today.getFullYear() - birthday.getFullYear();
    if (today.getMonth() < birthday.getMonth() ||
        (today.getMonth() === birthday.getMonth() && today.getDate() < birthday.getDate())) {
      age -= 1;
    }
    const allowed = certification.certified && age >= 19;
    res.json({ imp_uid, verdict: allowed ? "allow" : "deny" });
  } catch (e) {
    res.status(502).json({ error: "portone" });
  }
});

app.listen(Number(port), "127.0.0.1");
