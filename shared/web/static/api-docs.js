// intake's /docs/api: Swagger UI over the service's own /openapi.json, for reading only (no
// "Try it out": requests need an RFC 9421 signature; no call to the online validator).
/* global SwaggerUIBundle */
(function () {
  var root = document.getElementById("swagger-ui");
  SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    domNode: root,
    deepLinking: true,
    supportedSubmitMethods: [],
    validatorUrl: null,
    defaultModelsExpandDepth: 1,
  });
})();
