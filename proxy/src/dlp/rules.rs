//! The `token_patterns` rule table, written from the providers' documented
//! token formats.
//!
//! Each rule has literal keywords (the prefilter: a rule's regex only runs
//! in a bounded window around a keyword occurrence) and a byte regex whose
//! maximum match length must be finite, since the stream holds back that
//! many bytes. Examples are templates, expanded only in tests, so this file
//! never contains a credential-shaped string: `{36:alnum}` stands for 36
//! characters of that class.
//!
//! Token boundaries: `\b` is the ASCII word boundary (regexes are compiled
//! with Unicode off). Tokens that may end in `-` use the explicit tail
//! `END` instead, which also accepts the end of the stream.

/// One credential format.
pub(crate) struct RuleDef {
    /// Stable rule name, reported in block reasons.
    pub(crate) name: &'static str,
    /// Literals, one of which occurs in every match (case-sensitive), each
    /// at least three bytes long. Not necessarily a prefix: the fingerprint
    /// pass finds a keyword by a pair at an even and a pair at an odd
    /// offset within its first nine bytes, the rarest in ordinary text
    /// (`token::COMMON_PAIRS`), so a keyword is chosen where the token is
    /// rare (`k-ant-`, not `sk-ant-`, which `task-` shares). A two-byte
    /// literal is spelled out with each byte that can follow it (`SK0` …).
    pub(crate) keywords: &'static [&'static str],
    /// The confirming regex (bytes, ASCII); every match contains a keyword.
    pub(crate) regex: &'static str,
    /// A match containing one of these substrings is a documented example,
    /// not a credential.
    pub(crate) exclude: &'static [&'static str],
    /// Templates that must be detected.
    #[cfg_attr(not(test), allow(dead_code, reason = "read by the rule tests"))]
    pub(crate) examples: &'static [&'static str],
    /// Templates that must not be detected.
    #[cfg_attr(not(test), allow(dead_code, reason = "read by the rule tests"))]
    pub(crate) near_misses: &'static [&'static str],
}

/// A token character class boundary usable after tokens that may end in `-`.
macro_rules! end {
    () => {
        r"(?:[^0-9A-Za-z_\-]|$)"
    };
}

pub(crate) static RULES: &[RuleDef] = &[
    RuleDef {
        name: "aws-access-key-id",
        keywords: &["AKIA", "ASIA"],
        regex: r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
        exclude: &["EXAMPLE"],
        examples: &["id=AK{=}IA{16:UPPER}", "\"AS{=}IA{16:UPPER}\""],
        near_misses: &[
            "AK{=}IA{15:UPPER}",
            "AK{=}IA{17:UPPER}",
            "xAK{=}IA{16:UPPER}",
            "AK{=}IAIOSFODNN7EXAMPLE",
        ],
    },
    RuleDef {
        name: "aws-secret-access-key",
        keywords: &["aws_secret", "AWS_SECRET", "tAccessKey"],
        regex: r#"(?i:aws_?secret_?(?:access_?)?key|secretaccesskey)["']?\s{0,4}[:=]\s{0,4}["']?[A-Za-z0-9/+]{40}\b"#,
        exclude: &["EXAMPLEKEY"],
        examples: &[
            "aws_secret_access_key = {40:b64}",
            "\"SecretAccessKey\": \"{40:b64}\"",
        ],
        near_misses: &[
            "aws_secret_access_key = {39:b64}",
            "aws_secret_access_key = {20:b64}EXAMPLEKEY{10:b64}",
        ],
    },
    RuleDef {
        name: "gcp-api-key",
        keywords: &["AIza"],
        regex: concat!(r"\bAIza[0-9A-Za-z_\-]{35}", end!()),
        exclude: &[],
        examples: &["key=AI{=}za{35:b64url}"],
        near_misses: &["AI{=}za{34:b64url} ", "AI{=}za{36:b64url}"],
    },
    RuleDef {
        name: "gcp-service-account-key",
        keywords: &["y_id\""],
        regex: r#""private_key_id"\s{0,4}:\s{0,4}"[0-9a-f]{40}""#,
        exclude: &[],
        examples: &["{\"private_key_id\": \"{40:hex}\"}"],
        near_misses: &[
            "{\"private_key_id\": \"{39:hex}\"}",
            "{\"private_key_id\": \"\"}",
        ],
    },
    RuleDef {
        name: "gcp-oauth-access-token",
        keywords: &["ya29."],
        regex: concat!(r"\bya29\.[0-9A-Za-z_\-]{30,512}", end!()),
        exclude: &[],
        examples: &["Bearer ya{=}29.{80:b64url}"],
        near_misses: &["ya{=}29.{20:alnum} ", "xya{=}29.{80:alnum}"],
    },
    RuleDef {
        name: "gcp-oauth-refresh-token",
        keywords: &["1//0"],
        regex: concat!(r"\b1//0[0-9A-Za-z_\-]{40,400}", end!()),
        exclude: &[],
        examples: &["refresh=1/{=}/0{60:b64url}"],
        near_misses: &["1/{=}/0{20:alnum} ", "see 1/{=}/0 and more"],
    },
    RuleDef {
        name: "gcp-oauth-client-secret",
        keywords: &["GOCSPX-"],
        regex: concat!(r"\bGOCSPX-[0-9A-Za-z_\-]{28}", end!()),
        exclude: &[],
        examples: &["GOC{=}SPX-{28:b64url}"],
        near_misses: &["GOC{=}SPX-{27:alnum} ", "GOC{=}SPX-{29:alnum}"],
    },
    RuleDef {
        name: "azure-storage-account-key",
        keywords: &["tKey="],
        regex: r"AccountKey=[A-Za-z0-9+/]{86}==",
        exclude: &[],
        examples: &["DefaultEndpointsProtocol=https;AccountName=x;AccountKey={86:b64}=="],
        near_misses: &["AccountKey={60:b64}==", "AccountKey=<your key>"],
    },
    RuleDef {
        name: "azure-ad-client-secret",
        keywords: &[
            "0Q~", "1Q~", "2Q~", "3Q~", "4Q~", "5Q~", "6Q~", "7Q~", "8Q~", "9Q~",
        ],
        regex: concat!(r"\b[0-9A-Za-z_~.]{3}[0-9]Q~[0-9A-Za-z_~.\-]{31,34}", end!()),
        exclude: &[],
        examples: &["secret={3:alnum}8Q{=}~{34:alnum}"],
        near_misses: &["{3:alnum}8Q{=}~{20:alnum} ", "abcQ{=}~{34:alnum}"],
    },
    RuleDef {
        name: "github-pat-classic",
        keywords: &["ghp_"],
        regex: r"\bghp_[0-9A-Za-z]{36}\b",
        exclude: &[],
        examples: &["token gh{=}p_{36:alnum}", "\"gh{=}p_{36:alnum}\""],
        near_misses: &[
            "gh{=}p_{35:alnum}",
            "gh{=}p_{37:alnum}",
            "xgh{=}p_{36:alnum}",
        ],
    },
    RuleDef {
        name: "github-oauth-token",
        keywords: &["gho_"],
        regex: r"\bgho_[0-9A-Za-z]{36}\b",
        exclude: &[],
        examples: &["gh{=}o_{36:alnum}"],
        near_misses: &["gh{=}o_{30:alnum}", "agh{=}o_{36:alnum}"],
    },
    RuleDef {
        name: "github-user-to-server-token",
        keywords: &["ghu_"],
        regex: r"\bghu_[0-9A-Za-z]{36}\b",
        exclude: &[],
        examples: &["gh{=}u_{36:alnum}"],
        near_misses: &["gh{=}u_{35:alnum}", "gh{=}u_{36:alnum}x"],
    },
    RuleDef {
        name: "github-app-installation-token",
        keywords: &["ghs_"],
        regex: r"\bghs_[0-9A-Za-z]{36}\b",
        exclude: &[],
        examples: &["gh{=}s_{36:alnum}"],
        near_misses: &["gh{=}s_{35:alnum}", "bgh{=}s_{36:alnum}"],
    },
    RuleDef {
        name: "github-refresh-token",
        keywords: &["ghr_"],
        regex: r"\bghr_[0-9A-Za-z]{36}(?:[0-9A-Za-z]{40})?\b",
        exclude: &[],
        examples: &["gh{=}r_{36:alnum}", "gh{=}r_{76:alnum}"],
        near_misses: &["gh{=}r_{35:alnum}", "gh{=}r_{50:alnum}"],
    },
    RuleDef {
        name: "github-fine-grained-pat",
        keywords: &["b_pat_"],
        regex: r"\bgithub_pat_[0-9A-Za-z]{22}_[0-9A-Za-z]{59}\b",
        exclude: &[],
        examples: &["git{=}hub_pat_{22:alnum}_{59:alnum}"],
        near_misses: &[
            "git{=}hub_pat_{22:alnum}_{58:alnum}",
            "git{=}hub_pat_{21:alnum}_{59:alnum}",
        ],
    },
    RuleDef {
        name: "gitlab-pat",
        keywords: &["glpat-"],
        regex: concat!(r"\bglpat-[0-9A-Za-z_\-]{20,64}", end!()),
        exclude: &[],
        examples: &[
            "PRIVATE-TOKEN: gl{=}pat-{20:b64url}",
            "gl{=}pat-{40:alnum}.01.{9:alnum}",
        ],
        near_misses: &["gl{=}pat-{19:alnum} ", "gl{=}pat-xxxx"],
    },
    RuleDef {
        name: "gitlab-runner-token",
        keywords: &["glrt-"],
        regex: concat!(r"\bglrt-[0-9A-Za-z_\-]{20,64}", end!()),
        exclude: &[],
        examples: &["gl{=}rt-{20:b64url}"],
        near_misses: &["gl{=}rt-{10:alnum} "],
    },
    RuleDef {
        name: "gitlab-deploy-token",
        keywords: &["gldt-"],
        regex: concat!(r"\bgldt-[0-9A-Za-z_\-]{20,64}", end!()),
        exclude: &[],
        examples: &["gl{=}dt-{20:b64url}"],
        near_misses: &["gl{=}dt-{12:alnum} "],
    },
    RuleDef {
        name: "gitlab-pipeline-trigger-token",
        keywords: &["glptt-"],
        regex: r"\bglptt-[0-9a-f]{40}\b",
        exclude: &[],
        examples: &["gl{=}ptt-{40:hex}"],
        near_misses: &["gl{=}ptt-{39:hex}", "gl{=}ptt-{40:UPPER}"],
    },
    RuleDef {
        name: "slack-bot-token",
        keywords: &["xoxb-"],
        regex: r"\bxoxb-[0-9]{10,13}-[0-9]{10,13}-[0-9A-Za-z]{24}\b",
        exclude: &[],
        examples: &["xo{=}xb-{12:digit}-{13:digit}-{24:alnum}"],
        near_misses: &[
            "xo{=}xb-{12:digit}-{13:digit}-{23:alnum}",
            "xo{=}xb-{9:digit}-{13:digit}-{24:alnum}",
        ],
    },
    RuleDef {
        name: "slack-user-token",
        keywords: &["xoxp-"],
        regex: r"\bxoxp-[0-9]{10,13}-[0-9]{10,13}-[0-9]{10,13}-[0-9a-f]{32}\b",
        exclude: &[],
        examples: &["xo{=}xp-{12:digit}-{12:digit}-{13:digit}-{32:hex}"],
        near_misses: &["xo{=}xp-{12:digit}-{12:digit}-{13:digit}-{31:hex}"],
    },
    RuleDef {
        name: "slack-app-token",
        keywords: &["xapp-"],
        regex: r"\bxapp-[0-9]-[0-9A-Z]{9,12}-[0-9]{10,16}-[0-9a-f]{64}\b",
        exclude: &[],
        examples: &["xa{=}pp-1-{11:UPPER}-{13:digit}-{64:hex}"],
        near_misses: &["xa{=}pp-1-{11:UPPER}-{13:digit}-{63:hex}"],
    },
    RuleDef {
        name: "slack-legacy-token",
        keywords: &["xoxs-"],
        regex: concat!(r"\bxoxs-[0-9]{5,20}-[0-9A-Za-z\-]{10,200}", end!()),
        exclude: &[],
        examples: &["xo{=}xs-{10:digit}-{40:alnum}"],
        near_misses: &["xo{=}xs-abc-{40:alnum}", "xo{=}xs-{10:digit}-{5:alnum} "],
    },
    RuleDef {
        name: "slack-webhook-url",
        keywords: &["hooks.slack.com/"],
        regex: r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Z0-9]{8,12}/[A-Z0-9]{8,12}/[0-9A-Za-z]{24}",
        exclude: &[],
        examples: &["https://hooks.sl{=}ack.com/services/T{9:UPPER}/B{9:UPPER}/{24:alnum}"],
        near_misses: &[
            "https://hooks.sl{=}ack.com/services/T000/B000/XXXX",
            "https://hooks.sl{=}ack.com/",
        ],
    },
    RuleDef {
        name: "stripe-secret-key",
        keywords: &["k_live_", "k_test_"],
        regex: r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{24,247}\b",
        exclude: &[],
        examples: &["sk{=}_live_{24:alnum}", "rk{=}_test_{99:alnum}"],
        near_misses: &["sk{=}_live_{23:alnum}", "sk{=}_live_{10:alnum}-{20:alnum}"],
    },
    RuleDef {
        name: "stripe-webhook-secret",
        keywords: &["hsec_"],
        regex: r"\bwhsec_[0-9A-Za-z]{32,64}\b",
        exclude: &[],
        examples: &["wh{=}sec_{32:alnum}"],
        near_misses: &["wh{=}sec_{31:alnum}", "wh{=}sec_{65:alnum}"],
    },
    RuleDef {
        name: "anthropic-api-key",
        keywords: &["k-ant-"],
        regex: concat!(
            r"\bsk-ant-(?:api|admin|oat|sid)[0-9]{2}-[0-9A-Za-z_\-]{80,120}",
            end!()
        ),
        exclude: &[],
        examples: &[
            "x-api-key: sk{=}-ant-api03-{93:b64url}AA",
            "sk{=}-ant-oat01-{95:alnum}",
        ],
        near_misses: &["sk{=}-ant-api03-{40:alnum} ", "sk{=}-ant-foo03-{95:alnum}"],
    },
    RuleDef {
        name: "openai-api-key",
        keywords: &["T3BlbkFJ"],
        regex: concat!(
            r"\bsk-(?:[a-z]{1,10}-)?[0-9A-Za-z_\-]{20,200}T3BlbkFJ[0-9A-Za-z_\-]{20,200}",
            end!()
        ),
        exclude: &[],
        examples: &[
            "sk{=}-{20:alnum}T3Blb{=}kFJ{20:alnum}",
            "sk{=}-{48:b64url}T3Blb{=}kFJ{58:b64url}",
        ],
        near_misses: &[
            "sk{=}-{20:alnum}T3Blb{=}kFJ{10:alnum} ",
            "{20:alnum}T3Blb{=}kFJ{20:alnum}",
        ],
    },
    RuleDef {
        name: "openai-scoped-key",
        keywords: &["k-proj-", "k-svcacct-", "k-admin-"],
        regex: concat!(
            r"\bsk-(?:proj|svcacct|admin)-[0-9A-Za-z_\-]{80,200}",
            end!()
        ),
        exclude: &[],
        examples: &["sk{=}-proj-{120:b64url}", "sk{=}-svcacct-{100:alnum}"],
        near_misses: &["sk{=}-proj-{40:alnum} ", "task-proj-{100:alnum}"],
    },
    RuleDef {
        name: "huggingface-token",
        keywords: &["hf_"],
        regex: r"\bhf_[A-Za-z]{34}\b",
        exclude: &[],
        examples: &["hf{=}_{34:alpha}"],
        near_misses: &[
            "hf{=}_{33:alpha}",
            "hf{=}_{34:alnum}9",
            "shelf{=}_{34:alpha}",
        ],
    },
    RuleDef {
        name: "huggingface-org-token",
        keywords: &["i_org_"],
        regex: r"\bapi_org_[A-Za-z]{34}\b",
        exclude: &[],
        examples: &["api{=}_org_{34:alpha}"],
        near_misses: &["api{=}_org_{33:alpha}"],
    },
    RuleDef {
        name: "npm-access-token",
        keywords: &["npm_"],
        regex: r"\bnpm_[0-9A-Za-z]{36}\b",
        exclude: &[],
        examples: &["//registry.npmjs.org/:_authToken=np{=}m_{36:alnum}"],
        near_misses: &["np{=}m_{35:alnum}", "np{=}m_{37:alnum}"],
    },
    RuleDef {
        name: "pypi-api-token",
        keywords: &["i-AgE"],
        regex: concat!(
            r"\bpypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[0-9A-Za-z_\-]{50,300}",
            end!()
        ),
        exclude: &[],
        examples: &["password = py{=}pi-AgEIcHlwaS5vcmc{150:b64url}"],
        near_misses: &["py{=}pi-AgEIcHlwaS5vcmc{10:alnum} ", "py{=}pi-{150:alnum}"],
    },
    RuleDef {
        name: "dockerhub-token",
        keywords: &["dckr_"],
        regex: concat!(r"\bdckr_(?:pat|oat)_[0-9A-Za-z_\-]{27,40}", end!()),
        exclude: &[],
        examples: &["dc{=}kr_pat_{27:b64url}"],
        near_misses: &["dc{=}kr_pat_{20:alnum} ", "dc{=}kr_xyz_{27:alnum}"],
    },
    RuleDef {
        name: "sendgrid-api-key",
        keywords: &["SG."],
        regex: concat!(r"\bSG\.[0-9A-Za-z_\-]{22}\.[0-9A-Za-z_\-]{43}", end!()),
        exclude: &[],
        examples: &["S{=}G.{22:b64url}.{43:b64url}"],
        near_misses: &[
            "S{=}G.{21:alnum}.{43:alnum}",
            "S{=}G.{22:alnum}.{42:alnum} ",
        ],
    },
    RuleDef {
        name: "twilio-api-key",
        keywords: &[
            "SK0", "SK1", "SK2", "SK3", "SK4", "SK5", "SK6", "SK7", "SK8", "SK9", "SKa", "SKb",
            "SKc", "SKd", "SKe", "SKf",
        ],
        regex: r"\bSK[0-9a-f]{32}\b",
        exclude: &[],
        examples: &["S{=}K{32:hex}"],
        near_misses: &["S{=}K{31:hex}", "TAS{=}K{32:hex}", "S{=}K{32:HEXUP}"],
    },
    RuleDef {
        name: "mailgun-api-key",
        keywords: &["key-"],
        regex: r"\bkey-[0-9a-f]{32}\b",
        exclude: &[],
        examples: &["api:ke{=}y-{32:hex}"],
        near_misses: &["ke{=}y-{31:hex}", "ke{=}y-{33:hex}", "monkey-{32:hex}"],
    },
    RuleDef {
        name: "mailchimp-api-key",
        keywords: &[
            "0-us", "1-us", "2-us", "3-us", "4-us", "5-us", "6-us", "7-us", "8-us", "9-us", "a-us",
            "b-us", "c-us", "d-us", "e-us", "f-us",
        ],
        regex: r"\b[0-9a-f]{32}-us[0-9]{1,2}\b",
        exclude: &[],
        examples: &["{32:hex}-u{=}s21", "{32:hex}-u{=}s1"],
        near_misses: &["{31:hex}-u{=}s21", "{32:hex}-u{=}s123", "multi-u{=}ser"],
    },
    RuleDef {
        name: "shopify-token",
        keywords: &["hpat_", "hpss_"],
        regex: r"\bshp(?:at|ss)_[0-9a-fA-F]{32}\b",
        exclude: &[],
        examples: &["sh{=}pat_{32:hex}"],
        near_misses: &["sh{=}pat_{31:hex}", "sh{=}pxx_{32:hex}"],
    },
    RuleDef {
        name: "digitalocean-token",
        keywords: &["_v1_"],
        regex: r"\bdo[por]_v1_[0-9a-f]{64}\b",
        exclude: &[],
        examples: &["do{=}p_v1_{64:hex}"],
        near_misses: &["do{=}p_v1_{63:hex}", "do{=}x_v1_{64:hex}"],
    },
    RuleDef {
        name: "linear-api-key",
        keywords: &["n_api_"],
        regex: r"\blin_api_[0-9A-Za-z]{40}\b",
        exclude: &[],
        examples: &["li{=}n_api_{40:alnum}"],
        near_misses: &["li{=}n_api_{39:alnum}"],
    },
    RuleDef {
        name: "notion-token",
        keywords: &["tn_"],
        regex: r"\bntn_[0-9A-Za-z]{46}\b",
        exclude: &[],
        examples: &["nt{=}n_{46:alnum}"],
        near_misses: &["nt{=}n_{45:alnum}", "intn_{46:alnum}"],
    },
    RuleDef {
        name: "atlassian-api-token",
        keywords: &["ATATT3"],
        regex: concat!(r"\bATATT3[0-9A-Za-z_\-=]{180,300}", end!()),
        exclude: &[],
        examples: &["AT{=}ATT3xFfGF0{180:b64url}=1A2B3C4D"],
        near_misses: &["AT{=}ATT3{50:alnum} "],
    },
    RuleDef {
        name: "databricks-token",
        keywords: &["dapi"],
        regex: r"\bdapi[0-9a-f]{32}(?:-[0-9])?\b",
        exclude: &[],
        examples: &["da{=}pi{32:hex}", "da{=}pi{32:hex}-2"],
        near_misses: &["da{=}pi{31:hex}", "rapida{=}pi{32:hex}"],
    },
    RuleDef {
        name: "grafana-service-account-token",
        keywords: &["glsa_"],
        regex: r"\bglsa_[0-9A-Za-z]{32}_[0-9a-f]{8}\b",
        exclude: &[],
        examples: &["gl{=}sa_{32:alnum}_{8:hex}"],
        near_misses: &["gl{=}sa_{32:alnum}_{7:hex}"],
    },
    RuleDef {
        name: "new-relic-user-key",
        keywords: &["NRAK-"],
        regex: r"\bNRAK-[0-9A-Z]{27}\b",
        exclude: &[],
        examples: &["NR{=}AK-{27:UPPER}"],
        near_misses: &["NR{=}AK-{26:UPPER}"],
    },
    RuleDef {
        name: "sentry-token",
        keywords: &["sntrys_eyJ", "sntryu_"],
        regex: concat!(
            r"\b(?:sntrys_eyJ[0-9A-Za-z+/=_\-]{50,400}|sntryu_[0-9a-f]{64})",
            end!()
        ),
        exclude: &[],
        examples: &["sn{=}tryu_{64:hex}", "sn{=}trys_eyJ{80:b64url}"],
        near_misses: &["sn{=}tryu_{63:hex} ", "sn{=}trys_{80:alnum}"],
    },
    RuleDef {
        name: "telegram-bot-token",
        keywords: &[":AA"],
        regex: concat!(r"\b[0-9]{8,10}:AA[0-9A-Za-z_\-]{33}", end!()),
        exclude: &[],
        examples: &["{10:digit}:A{=}A{33:b64url}"],
        near_misses: &["{10:digit}:A{=}A{20:alnum} ", "{4:digit}:A{=}A{33:alnum}"],
    },
    RuleDef {
        name: "discord-webhook-url",
        keywords: &["i/webhooks/"],
        regex: concat!(
            r"discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[0-9A-Za-z_\-]{60,68}",
            end!()
        ),
        exclude: &[],
        examples: &["https://disc{=}ord.com/api/webhooks/{18:digit}/{68:b64url}"],
        near_misses: &["https://disc{=}ord.com/api/webhooks/{18:digit}/{10:alnum} "],
    },
    RuleDef {
        name: "square-token",
        keywords: &["sq0atp-", "sq0csp-"],
        regex: concat!(
            r"\b(?:sq0atp-[0-9A-Za-z_\-]{22}|sq0csp-[0-9A-Za-z_\-]{43})",
            end!()
        ),
        exclude: &[],
        examples: &["sq{=}0csp-{43:b64url}", "sq{=}0atp-{22:b64url}"],
        near_misses: &["sq{=}0csp-{20:alnum} ", "sq{=}0xyz-{43:alnum}"],
    },
    RuleDef {
        name: "age-secret-key",
        keywords: &["-SECRET-KEY-1"],
        regex: r"AGE-SECRET-KEY-1[0-9A-Z]{58}\b",
        exclude: &[],
        examples: &["AGE-SEC{=}RET-KEY-1{58:UPPER}"],
        near_misses: &["AGE-SEC{=}RET-KEY-1{57:UPPER}"],
    },
    RuleDef {
        name: "hashicorp-vault-token",
        keywords: &["hvs."],
        regex: concat!(r"\bhvs\.[0-9A-Za-z_\-]{90,200}", end!()),
        exclude: &[],
        examples: &["hv{=}s.{95:b64url}"],
        near_misses: &["hv{=}s.{24:alnum} ", "this.{95:alnum}"],
    },
    RuleDef {
        name: "terraform-cloud-token",
        keywords: &["sv1."],
        regex: concat!(r"\b[0-9A-Za-z]{14}\.atlasv1\.[0-9A-Za-z_\-]{60,70}", end!()),
        exclude: &[],
        examples: &["{14:alnum}.atl{=}asv1.{67:b64url}"],
        near_misses: &["{14:alnum}.atl{=}asv1.{20:alnum} "],
    },
    RuleDef {
        name: "doppler-token",
        keywords: &["dp.pt."],
        regex: r"\bdp\.pt\.[0-9A-Za-z]{40,44}\b",
        exclude: &[],
        examples: &["dp{=}.pt.{43:alnum}"],
        near_misses: &["dp{=}.pt.{30:alnum}"],
    },
    RuleDef {
        name: "postman-api-key",
        keywords: &["PMAK-"],
        regex: r"\bPMAK-[0-9a-f]{24}-[0-9a-f]{34}\b",
        exclude: &[],
        examples: &["PM{=}AK-{24:hex}-{34:hex}"],
        near_misses: &["PM{=}AK-{24:hex}-{33:hex}"],
    },
    RuleDef {
        name: "private-key-pem",
        keywords: &["RIVATE KEY"],
        // The header alone is not a key (parsers and regexes quote it); require
        // key material after it, possibly behind escaped newlines in source.
        regex: r"-----BEGIN (?:RSA |DSA |EC |OPENSSH |ENCRYPTED |PGP |SSH2 ENCRYPTED )?PRIVATE KEY(?: BLOCK)?-----(?:\s|\\[rn]){1,8}(?:[A-Za-z0-9+/=]{16}|Proc-Type:|Comment:|Version:)",
        exclude: &[],
        examples: &[
            "-----BEGIN RSA PRI{=}VATE KEY-----\nMIIE{40:b64}",
            "\"-----BEGIN PRI{=}VATE KEY-----\\nMIIE{40:b64}\"",
            "-----BEGIN OPENSSH PRI{=}VATE KEY-----\r\nb3Bl{60:b64}",
        ],
        near_misses: &[
            "-----BEGIN PUBLIC KEY-----\nMIIB{40:b64}",
            "-----END PRI{=}VATE KEY-----\nMIIE{40:b64}",
            "r\"-----BEGIN PRI{=}VATE KEY-----\"",
        ],
    },
    RuleDef {
        name: "putty-private-key",
        keywords: &["PuTTY-User-Key-File-"],
        regex: r"PuTTY-User-Key-File-[23]: (?:ssh-rsa|ssh-dss|ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521))",
        exclude: &[],
        examples: &["PuTTY-User-Key-{=}File-3: ssh-ed25519\nEncryption: none"],
        near_misses: &["PuTTY-User-Key-{=}File-9: ssh-rsa"],
    },
    RuleDef {
        name: "jwt",
        keywords: &["yJhbGci", "yJ0eXAi", "yJraWQi"],
        regex: r"\beyJ[0-9A-Za-z_\-]{8,1024}\.eyJ[0-9A-Za-z_\-]{16}",
        exclude: &[],
        examples: &[
            "Authorization: Bearer ey{=}JhbGci{30:b64url}.ey{=}J{80:b64url}.{43:b64url}",
            "ey{=}J0eXAi{20:b64url}.ey{=}J{30:b64url}",
        ],
        near_misses: &[
            "ey{=}JhbGci{36:b64url}",
            "ey{=}JhbGci{36:b64url}.{80:b64url}",
            "ey{=}JhbGci.ey{=}J{80:alnum}",
        ],
    },
];

/// Expands an example template: `{N:class}` becomes N characters of the
/// class (deterministic, seeded), `{=}` becomes nothing (it splits literals
/// so this source never contains a token-shaped string).
#[cfg(test)]
pub(crate) fn expand(template: &str, seed: u64) -> String {
    let mut out = String::new();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        // xorshift64*: enough for varied example text.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let spec_end = after.find('}');
        let spec = spec_end.map(|e| &after[..e]);
        let parsed = spec.and_then(|sp| {
            if sp == "=" {
                return Some((0, ""));
            }
            let (n, class) = sp.split_once(':')?;
            Some((n.parse::<usize>().ok()?, class))
        });
        let Some((n, class)) = parsed else {
            out.push('{');
            rest = after;
            continue;
        };
        rest = &after[spec_end.unwrap_or(0) + 1..];
        if class.is_empty() {
            continue;
        }
        let alphabet: &[u8] = match class {
            "alnum" => b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            "alpha" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            "hex" => b"0123456789abcdef",
            "HEXUP" => b"0123456789ABCDEF",
            "UPPER" => b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "digit" => b"0123456789",
            "b64" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            "b64url" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
            other => panic!("unknown template class {other}"),
        };
        for _ in 0..n {
            let i = (next() % alphabet.len() as u64) as usize;
            out.push(alphabet[i] as char);
        }
    }
    out.push_str(rest);
    out
}
