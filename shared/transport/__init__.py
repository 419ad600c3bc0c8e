"""MQTT client and worker, embedded broker, consumer and publisher."""
