// /docs: Swagger UI from the swagger-ui-bundle package, served by this server (works offline)
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
                             presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"});
