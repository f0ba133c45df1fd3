import Testing
@testable import GripCore

@Suite struct RoutesFileTests {
    // MARK: - Tokenizer (Pushpin's routesfiletest cases plus routes.md 1)

    struct TokenizerCase: Sendable, CustomTestStringConvertible {
        var line: String
        /// Each section as value plus "name=value" props ("name" alone for a flag with an empty value).
        var sections: [(String, [String])]
        var testDescription: String { line }
    }

    @Test(arguments: [
        TokenizerCase(line: "apple", sections: [("apple", [])]),
        TokenizerCase(line: "apple banana", sections: [("apple", []), ("banana", [])]),
        TokenizerCase(line: "  apple   banana  # comment", sections: [("apple", []), ("banana", [])]),
        TokenizerCase(
            line: #"apple,organic,type=gala,from="washington, \"usa\"""#,
            sections: [("apple", ["organic", "type=gala", #"from=washington, "usa""#])]),
        TokenizerCase(
            line: "apple,organic banana cherry,type=bing",
            sections: [("apple", ["organic"]), ("banana", []), ("cherry", ["type=bing"])]),
        TokenizerCase(line: ",organic", sections: [("", ["organic"])]),
        TokenizerCase(line: "type=gala", sections: [("", ["type=gala"])]),
        TokenizerCase(line: "", sections: []),
        TokenizerCase(line: "   ", sections: []),
        TokenizerCase(line: "# whole line comment", sections: []),
        TokenizerCase(line: "apple#comment banana", sections: [("apple", [])]),
        TokenizerCase(line: #"a"b c"d e"#, sections: [("ab cd", []), ("e", [])]),
        TokenizerCase(line: #""x#y" z"#, sections: [("x#y", []), ("z", [])]),
        TokenizerCase(line: #"a,p="\\" b"#, sections: [("a", [#"p=\"#]), ("b", [])]),
        TokenizerCase(line: "a,k=v=w b", sections: [("a", ["k=v=w"]), ("b", [])]),
        TokenizerCase(line: "a,header=X:1,header=Y:2 b", sections: [("a", ["header=X:1", "header=Y:2"]), ("b", [])]),
        TokenizerCase(line: "*,header=\"X-Note: a, b\" backend:80", sections: [("*", ["header=X-Note: a, b"]), ("backend:80", [])]),
    ])
    func tokenizesLine(_ c: TokenizerCase) throws {
        let sections = try RoutesFile.tokenize(c.line).get()
        let expected = c.sections.map { value, props in
            RoutesFile.Section(value: value, props: props.map { p in
                if let eq = p.firstIndex(of: "=") {
                    return (name: String(p[..<eq]), value: String(p[p.index(after: eq)...]))
                }
                return (name: p, value: "")
            })
        }
        #expect(sections == expected)
    }

    @Test(arguments: [
        (#"apple,organic,type="gala"#, RoutesFile.TokenizeError.unterminatedQuote),
        (#"apple,type="gala\"#, .unterminatedQuote),
        (#"apple,type="a\nb""#, .invalidEscape("n")),
        ("apple,organic,", .expectingProp),
        ("apple,,organic", .expectingProp),
        ("apple,organic,=gala", .emptyPropName),
    ])
    func rejectsMalformedLine(_ line: String, _ error: RoutesFile.TokenizeError) {
        #expect(throws: error) { try RoutesFile.tokenize(line).get() }
    }

    // MARK: - routes.md 1 example block

    static let routesExample = """
    # host      condition props                     targets and target props
    *                                              localhost:8000
    *,path_beg=/ws/                                localhost:8000,over_http
    api.example.com,ssl=yes,path_beg=/v1/,path_rem=3   10.0.0.5:8443,ssl,insecure,host=internal.example 10.0.0.6:8443,ssl,insecure
    *,path_beg=/old/,replace_beg=/new/,prefix=legacy-  localhost:8000
    *,path_beg=/raw/,no_grip                       localhost:9000
    """

    @Test func parsesSpecExample() throws {
        let (routes, warnings) = try RoutesFile.parse(Self.routesExample, fileName: "/etc/pushpin/routes")
        #expect(warnings.isEmpty)
        #expect(routes.count == 5)

        #expect(routes[0].host == nil)
        #expect(routes[0].isIDOnly == false)
        #expect(routes[0].pathBeg == nil)
        #expect(routes[0].targets == [RouteTarget(kind: .backend(host: "localhost", port: 8000))])
        #expect(routes[0].lineNumber == 2)
        #expect(routes[0].id == "*,*,*,*")
        #expect(routes[0].prefix == "")
        #expect(routes[0].noGrip == false)

        #expect(routes[1].pathBeg == "/ws/")
        #expect(routes[1].targets == [RouteTarget(kind: .backend(host: "localhost", port: 8000), overHTTP: true)])

        let api = routes[2]
        #expect(api.host == "api.example.com")
        #expect(api.ssl == true)
        #expect(api.pathBeg == "/v1/")
        #expect(api.pathRem == 3)
        #expect(api.targets == [
            RouteTarget(kind: .backend(host: "10.0.0.5", port: 8443), ssl: true, insecure: true, hostHeader: "internal.example"),
            RouteTarget(kind: .backend(host: "10.0.0.6", port: 8443), ssl: true, insecure: true),
        ])
        #expect(api.lineNumber == 4)

        #expect(routes[3].replaceBeg == "/new/")
        #expect(routes[3].prefix == "legacy-")
        #expect(routes[4].noGrip == true)
        #expect(routes[4].targets == [RouteTarget(kind: .backend(host: "localhost", port: 9000))])
    }

    @Test func parsesShippedFile() throws {
        let (routes, warnings) = try RoutesFile.parse("* test\n", fileName: "routes")
        #expect(warnings.isEmpty)
        #expect(routes == [Route(host: nil, targets: [RouteTarget(kind: .test)], lineNumber: 1)])
        #expect(routes == RoutesFile.builtInRoutes)
    }

    @Test func quotedHeaderKeepsCommaAndSpace() throws {
        let (routes, _) = try RoutesFile.parse(#"*,header="X-Note: a, b" backend:80"#, fileName: "routes")
        #expect(routes[0].headers == [HTTPField("X-Note", "a, b")])
        #expect(routes[0].targets == [RouteTarget(kind: .backend(host: "backend", port: 80))])
    }

    // MARK: - Every condition prop

    @Test func parsesEveryConditionProp() throws {
        let line = "Example.COM,path_beg=/p/,ssl=no,proto=ws,id=main,path_rem=2,replace_beg=/q/,as_host=internal:8080,"
            + "header=X-A:1,header=\"X-B:  two\",header=X-Gone:,sig_iss=iss,sig_key=secret,prefix=pre-,no_grip,debug b:1"
        let (routes, warnings) = try RoutesFile.parse(line, fileName: "routes")
        #expect(warnings.isEmpty)
        let r = try #require(routes.first)
        #expect(r.host == "example.com")
        #expect(r.pathBeg == "/p/")
        #expect(r.ssl == false)
        #expect(r.proto == .ws)
        #expect(r.id == "main")
        #expect(r.isExplicitID)
        #expect(r.pathRem == 2)
        #expect(r.replaceBeg == "/q/")
        #expect(r.asHost == "internal:8080")
        #expect(r.headers == [HTTPField("X-A", "1"), HTTPField("X-B", "two"), HTTPField("X-Gone", "")])
        #expect(r.sigIss == "iss")
        #expect(r.sigKey == "secret")
        #expect(r.signature?.issuer == "iss")
        #expect(r.signature?.key == "secret")
        #expect(r.prefix == "pre-")
        #expect(r.noGrip)
        #expect(r.debug)
    }

    @Test func conditionDefaults() throws {
        let r = try #require(RoutesFile.parse("* b:1", fileName: "routes").routes.first)
        #expect(r.pathBeg == nil && r.ssl == nil && r.proto == nil && r.pathRem == nil && r.replaceBeg == nil)
        #expect(r.asHost == nil && r.headers.isEmpty && r.sigIss == nil && r.sigKey == nil && r.signature == nil)
        #expect(r.prefix == "" && !r.noGrip && !r.debug && !r.isExplicitID)
    }

    @Test(arguments: [
        ("*,proto=http b:1", Route.Proto.http),
        ("*,proto=ws b:1", .ws),
    ])
    func parsesProto(_ line: String, _ proto: Route.Proto) throws {
        #expect(try RoutesFile.parse(line, fileName: "r").routes.first?.proto == proto)
    }

    @Test func repeatedSingleValuePropKeepsLast() throws {
        let r = try #require(RoutesFile.parse("*,prefix=a,prefix=b,ssl=no,ssl=yes b:1", fileName: "r").routes.first)
        #expect(r.prefix == "b")
        #expect(r.ssl == true)
    }

    @Test(arguments: [
        // Only one of the pair: warned about, and the route has no signature of its own.
        ("*,sig_iss=x b:1", "sig_iss and sig_key must both be set"),
        ("*,sig_key=x b:1", "sig_iss and sig_key must both be set"),
    ])
    func signaturePairWarning(_ line: String, _ warning: String) throws {
        let (routes, warnings) = try RoutesFile.parse(line, fileName: "r")
        #expect(routes.first?.signature == nil)
        #expect(warnings.count == 1 && warnings[0].contains(warning))
    }

    @Test(arguments: [
        ("/etc/pushpin/routes", "*,sig_iss=i,sig_key=file:keys/k.pem b:1", "file:/etc/pushpin/keys/k.pem"),
        ("/etc/pushpin/routes", "*,sig_iss=i,sig_key=file:/abs/k.pem b:1", "file:/abs/k.pem"),
        ("routes", "*,sig_iss=i,sig_key=file:k.pem b:1", "file:k.pem"),
        ("/etc/pushpin/routes", "*,sig_iss=i,sig_key=base64:c2VjcmV0 b:1", "base64:c2VjcmV0"),
    ])
    func resolvesRelativeKeyFile(_ fileName: String, _ line: String, _ key: String) throws {
        #expect(try RoutesFile.parse(line, fileName: fileName).routes.first?.sigKey == key)
    }

    @Test func idOnlyCondition() throws {
        let (routes, warnings) = try RoutesFile.parse("id=special,path_beg=/x/ b:1\npath_beg=/y/ b:2", fileName: "r")
        #expect(routes.count == 2)
        #expect(routes[0].isIDOnly && routes[0].host == nil && routes[0].id == "special" && routes[0].pathBeg == "/x/")
        #expect(routes[1].isIDOnly && routes[1].id == "*,*,*,/y/")
        #expect(warnings == ["r:2: condition has no host and no id; only selectable as '*,*,*,/y/'"])
    }

    @Test(arguments: [
        ("* b:1", "*,*,*,*"),
        ("Host.example,proto=http,ssl=yes,path_beg=/a/ b:1", "host.example,http,no-ssl,/a/"),
        ("*,proto=ws,ssl=no b:1", "*,ws,ssl,*"),
        ("*,id= b:1", "*,*,*,*"),
    ])
    func derivesIDFromCondition(_ line: String, _ id: String) throws {
        #expect(try RoutesFile.parse(line, fileName: "r").routes.first?.id == id)
    }

    // MARK: - Every target prop

    @Test func parsesEveryTargetProp() throws {
        let line = "* b.example:443,ssl,insecure,host=front.example:8443,over_http,one_event,sub=a,sub=,sub=b test,sub=c"
        let (routes, warnings) = try RoutesFile.parse(line, fileName: "r")
        #expect(warnings.isEmpty)
        #expect(routes.first?.targets == [
            RouteTarget(kind: .backend(host: "b.example", port: 443), ssl: true, insecure: true,
                        hostHeader: "front.example:8443", overHTTP: true, oneEvent: true, subscriptions: ["a", "b"]),
            RouteTarget(kind: .test, subscriptions: ["c"]),
        ])
    }

    @Test func acceptsPolicyTargetPropsSilently() throws {
        let (routes, warnings) = try RoutesFile.parse("* b:1,untrusted,trust_connect_host,ipc_file_mode=777", fileName: "r")
        #expect(warnings.isEmpty)
        #expect(routes.first?.targets == [RouteTarget(kind: .backend(host: "b", port: 1))])
    }

    @Test func parsesBracketedIPv6Target() throws {
        #expect(try RoutesFile.parse("* [::1]:8080", fileName: "r").routes.first?.targets
            == [RouteTarget(kind: .backend(host: "::1", port: 8080))])
    }

    @Test func skipsZHTTPTargetsWithWarning() throws {
        let (routes, warnings) = try RoutesFile.parse("* zhttp/tcp://127.0.0.1:10000 b:80\n*,path_beg=/z/ zhttpreq/x", fileName: "r")
        #expect(routes.count == 2)
        #expect(routes[0].targets == [RouteTarget(kind: .backend(host: "b", port: 80))])
        #expect(routes[1].targets.isEmpty)
        #expect(warnings.count == 3)
        #expect(warnings[0].hasPrefix("r:1: target 'zhttp/tcp://127.0.0.1:10000'"))
        #expect(warnings[1].hasPrefix("r:2: target 'zhttpreq/x'"))
        #expect(warnings[2] == "r:2: route has no supported target; requests routed here get 502")
    }

    // MARK: - Warnings

    @Test func warnsAboutUnknownAndUnsupportedOptions() throws {
        let (routes, warnings) = try RoutesFile.parse("*,aco,jsonp_mode=basic,colour=red b:1,weight=3", fileName: "r")
        #expect(routes.count == 1)
        #expect(warnings == [
            "r:1: option 'aco' is not supported by GripProxy; ignored",
            "r:1: option 'jsonp_mode' is not supported by GripProxy; ignored",
            "r:1: unknown condition option 'colour'; ignored",
            "r:1: unknown target option 'weight'; ignored",
        ])
    }

    @Test(arguments: ["session", "orig_headers", "sockjs=/s", "sockjs_as_path=/t", "jsonp_cb=cb", "jsonp_body=b",
                      "jsonp_defcb=f", "jsonp_defmethod=POST"])
    func warnsAboutEachUnsupportedOption(_ prop: String) throws {
        let (routes, warnings) = try RoutesFile.parse("*,\(prop) b:1", fileName: "r")
        #expect(routes.count == 1)
        #expect(warnings.count == 1 && warnings[0].contains("is not supported by GripProxy"))
    }

    @Test func skipsDuplicateConditions() throws {
        let text = """
        * a:1
        *,path_beg=/x/ a:2
        example.com a:3
        * a:4
        *,path_beg=/x/,prefix=p a:5
        example.com,ssl=yes a:6
        example.com,path_beg=/x/ a:7
        *,path_beg=/x/,proto=ws a:8
        """
        let (routes, warnings) = try RoutesFile.parse(text, fileName: "r")
        #expect(routes.map(\.lineNumber) == [1, 2, 3, 6, 7, 8])
        #expect(warnings == [
            "r:4: skipping duplicate condition (same as line 1)",
            "r:5: skipping duplicate condition (same as line 2)",
        ])
    }

    @Test func warnsAboutSharedID() throws {
        let (routes, warnings) = try RoutesFile.parse("a.example,id=x b:1\nb.example,id=x b:2", fileName: "r")
        #expect(routes.count == 2)
        #expect(warnings == ["r:2: id 'x' is also used on line 1; Pushpin-Route cannot select it"])
    }

    // MARK: - Malformed lines (decisions.md D3)

    struct MalformedCase: Sendable, CustomTestStringConvertible {
        var text: String
        var line: Int
        var reason: String
        var testDescription: String { "\(line): \(reason)" }
    }

    @Test(arguments: [
        MalformedCase(text: "*", line: 1, reason: "must specify condition and at least one target"),
        MalformedCase(text: "# c\n\n*,path_beg=/a/", line: 3, reason: "must specify condition and at least one target"),
        MalformedCase(text: "* b:1\n*,proto=tcp b:1", line: 2, reason: "proto must be set to 'http' or 'ws'"),
        MalformedCase(text: "*,ssl=true b:1", line: 1, reason: "ssl must be set to 'yes' or 'no'"),
        MalformedCase(text: "*,path_beg= b:1", line: 1, reason: "path_beg cannot be empty"),
        MalformedCase(text: "*,path_beg b:1", line: 1, reason: "path_beg cannot be empty"),
        MalformedCase(text: "*,path_rem=x b:1", line: 1, reason: "path_rem must be a non-negative integer"),
        MalformedCase(text: "*,path_rem=-1 b:1", line: 1, reason: "path_rem must be a non-negative integer"),
        MalformedCase(text: "*,header=NoColon b:1", line: 1, reason: "header must use format 'name:value'"),
        MalformedCase(text: "*,header=:v b:1", line: 1, reason: "header must use format 'name:value'"),
        MalformedCase(text: "*,jsonp_mode=odd b:1", line: 1, reason: "jsonp_mode must be set to 'basic' or 'extended'"),
        MalformedCase(text: "* backend", line: 1, reason: "target bad format"),
        MalformedCase(text: "* backend:", line: 1, reason: "target invalid port"),
        MalformedCase(text: "* backend:0", line: 1, reason: "target invalid port"),
        MalformedCase(text: "* backend:65536", line: 1, reason: "target invalid port"),
        MalformedCase(text: "* backend:http", line: 1, reason: "target invalid port"),
        MalformedCase(text: "* b:1 ,ssl", line: 1, reason: "target bad format"),
        MalformedCase(text: "\n\n\n*,header=\"x b:1", line: 4, reason: "unterminated quote"),
        MalformedCase(text: "* b:1,", line: 1, reason: "expecting prop"),
        MalformedCase(text: "*,=x b:1", line: 1, reason: "empty prop name"),
    ])
    func malformedLineIsFatal(_ c: MalformedCase) {
        #expect(throws: RoutesParseError(file: "conf/routes", line: c.line, reason: c.reason)) {
            try RoutesFile.parse(c.text, fileName: "conf/routes")
        }
    }

    @Test func errorDescriptionNamesFileAndLine() {
        let error = RoutesParseError(file: "routes", line: 7, reason: "target bad format")
        #expect(error.description == "routes:7: target bad format")
    }

    @Test func crlfBOMAndCommentsAreHandled() throws {
        let text = "\u{FEFF}# routes\r\n\r\n* b:1 # trailing\r\nexample.com test\r\n"
        let (routes, warnings) = try RoutesFile.parse(text, fileName: "r")
        #expect(warnings.isEmpty)
        #expect(routes.map(\.lineNumber) == [3, 4])
        #expect(routes[1].host == "example.com")
        #expect(routes[1].targets == [RouteTarget(kind: .test)])
    }

    // MARK: - --route lines

    @Test func parsesCommandLineRoutes() throws {
        let (routes, warnings) = try RoutesFile.parse(lines: ["* test", "*,path_beg=/api/ localhost:8000", "* b:2"])
        #expect(routes.map(\.lineNumber) == [1, 2])
        #expect(routes[1].targets == [RouteTarget(kind: .backend(host: "localhost", port: 8000))])
        #expect(warnings == ["--route:3: skipping duplicate condition (same as line 1)"])
    }

    @Test func commandLineRouteErrorNamesPseudoFile() {
        #expect(throws: RoutesParseError(file: "--route", line: 2, reason: "target bad format")) {
            try RoutesFile.parse(lines: ["* test", "* nowhere"])
        }
    }
}
