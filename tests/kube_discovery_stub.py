import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
def res(name, kind, namespaced, verbs=["create","get","list","patch","update","delete"]):
    return {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs}
DOCS = {
 "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
 "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
   {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
   {"name": "rbac.authorization.k8s.io", "versions": [{"groupVersion": "rbac.authorization.k8s.io/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "rbac.authorization.k8s.io/v1", "version": "v1"}}]},
 "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [res("namespaces","Namespace",False), res("serviceaccounts","ServiceAccount",True), res("configmaps","ConfigMap",True), res("pods","Pod",True)]},
 "/apis/apps/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [res("daemonsets","DaemonSet",True)]},
 "/apis/rbac.authorization.k8s.io/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "rbac.authorization.k8s.io/v1", "resources": [res("clusterroles","ClusterRole",False), res("clusterrolebindings","ClusterRoleBinding",False)]},
}
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?")[0]
        doc = DOCS.get(path)
        code = 200
        if doc is None:
            code = 404
            doc = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}
        body = json.dumps(doc).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
s = HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
