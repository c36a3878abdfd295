// The bench upstream's handler for nginx (see nginx.conf.in): the same
// answers as `bb-loadgen upstream`, so the load generator checks them alike.
const GET_BODY = "hello from the bb-loadgen upstream\n";

function handle(r) {
    const expect = "Bearer " + process.env.EGRESS_TOKEN_BENCH;
    r.headersOut["Content-Type"] = "text/plain; charset=utf-8";
    if (r.headersIn.Authorization !== expect) {
        r.return(401, "upstream: the proxy did not inject the expected Authorization header\n");
        return;
    }
    if (r.method === "GET") {
        r.return(200, GET_BODY);
    } else if (r.method === "POST") {
        const body = r.requestBuffer;
        r.return(200, String(body ? body.length : 0));
    } else {
        r.return(405, "GET or POST\n");
    }
}

export default { handle };
